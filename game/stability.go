package game

// Stability reports whether (x, y) is an asymptotically stable rest point of the replicator
// dynamics of g, and the eigenvalues the verdict rests on.
func Stability(g Bimatrix, x, y []float64) (stable bool, eig []complex128, err error) {
	return false, nil, nil
}
