package game

// SignalLikelihood is P(m | T) of an induced signal: a type sends its own signal with
// probability q = ½ + δ·(ρ − ½) in the attacker's eyes and each other signal with the rest
// spread evenly. ρ is the signal credibility and δ the stage's attenuation δ_k: with δ = 1 the
// signal is as credible as the model allows, with δ = 0 it carries no information (the false
// signal has lost its influence, Definition 1 (8)).
func SignalLikelihood(n, sig, typ int, credibility, delta float64) float64 {
	q := 0.5 + clamp01(delta)*(clamp01(credibility)-0.5)
	if n <= 1 {
		return 1
	}
	if typ == sig {
		return q
	}
	return (1 - q) / float64(n-1)
}

// Posterior is the attacker's belief over defender types after observing signal sig
// (Bayes' rule with SignalLikelihood). A zero-probability observation returns the prior.
// The result of stage k is the prior of stage k+1 (Algorithm 1, step 7.8).
func Posterior(prior []float64, sig int, credibility, delta float64) []float64 {
	out := make([]float64, len(prior))
	if sig < 0 || sig >= len(prior) {
		copy(out, prior)
		return out
	}
	var z float64
	for j, p := range prior {
		out[j] = SignalLikelihood(len(prior), sig, j, credibility, delta) * p
		z += out[j]
	}
	if !(z > 0) {
		copy(out, prior)
		return out
	}
	for j := range out {
		out[j] /= z
	}
	return out
}
