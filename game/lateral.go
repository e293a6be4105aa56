package game

// Infection returns the lateral infection coefficients ξ_1, ξ_2, ξ_3 of host i (Section
// 3.2.1 (2)) from the connectivity matrix r (r_ii = 0), the on/off state b and the attenuation
// γ. Hosts j and k can pass an infection when c_jk = r_jk·b_j·b_k = 1.
//
//	ξ_1 = Σ_j γ c_ij
//	ξ_2 = Σ_j γ c_ij · Σ_{k≠i} γ c_jk
//	ξ_3 = Σ_j γ c_ij · Σ_{k≠i} γ c_jk · Σ_{l≠j,l≠i} γ c_kl
//
// Infection chains of four or more hops are ignored, as in the paper (γ⁴ is below the
// solver's tolerance). Indices out of range give zeros.
func Infection(r [][]float64, b []float64, gamma float64, i int) [3]float64 {
	n := len(r)
	if i < 0 || i >= n || len(b) != n {
		return [3]float64{}
	}
	c := func(p, q int) float64 {
		if p == q || q >= len(r[p]) {
			return 0
		}
		return r[p][q] * b[p] * b[q]
	}
	var xi [3]float64
	for j := 0; j < n; j++ {
		cij := gamma * c(i, j)
		if cij == 0 {
			continue
		}
		xi[0] += cij
		var s2, s3 float64
		for k := 0; k < n; k++ {
			if k == i {
				continue
			}
			cjk := gamma * c(j, k)
			if cjk == 0 {
				continue
			}
			s2 += cjk
			var s4 float64
			for l := 0; l < n; l++ {
				if l == j || l == i {
					continue
				}
				s4 += gamma * c(k, l)
			}
			s3 += cjk * s4
		}
		xi[1] += cij * s2
		xi[2] += cij * s3
	}
	return xi
}
