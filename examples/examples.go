// Package examples holds the ready-to-run configs and models of this directory; it embeds
// the paper's model (mttegdm-paper.yaml), which `proteus demo` runs the engine on, so the
// binary needs no checkout to show it. It imports nothing; every package may import it.
package examples

import _ "embed"

// PaperModel is mttegdm-paper.yaml: the case study of Zhang et al. (Electronics 2024, 13(4),
// 734, Section 4) as an MTTEGDM model file.
//
//go:embed mttegdm-paper.yaml
var PaperModel []byte
