package game

import "errors"

// Equilibrium is a Nash equilibrium (x, y) with each player's expected payoff.
type Equilibrium struct {
	X, Y                           []float64
	AttackerPayoff, DefenderPayoff float64
}

// NashEquilibria returns the Nash equilibria of g found by support enumeration.
func NashEquilibria(g Bimatrix) ([]Equilibrium, error) {
	return nil, errors.New("game: nash not implemented yet")
}

// IsNash reports whether (x, y) is a Nash equilibrium of g within tol.
func IsNash(g Bimatrix, x, y []float64, tol float64) bool {
	return false
}
