package stix

import "strings"

// Matches reports whether a report with exposure e (the reporter's) about target t is
// relevant to an agent whose own exposure is own. See Match for the rules.
func (e Exposure) Matches(t Target, own Exposure) bool {
	ok, _ := e.Match(t, own)
	return ok
}

// Match decides relevance and says why, for the audit log:
//
//   - a port target is relevant when own exposes that port and, if both sides name an
//     OS, it is the same OS (the paper's rule: block the reported port for a while if the
//     host runs the same operating system as reported);
//   - an address target (an attacker) is relevant when the reporter shares something an
//     attacker aims at with own: the same OS, the same software (same name, and the same
//     version when both name one), or the same exposed port;
//   - a report whose exposure is empty, or an invalid target, is never relevant: there
//     is no evidence it concerns this host.
//
// Names compare case-insensitively after trimming spaces.
func (e Exposure) Match(t Target, own Exposure) (bool, string) {
	switch {
	case !t.Valid():
		return false, "invalid target"
	case e.IsZero():
		return false, "report carries no exposure profile"
	case t.IsPort():
		if !own.exposesPort(t.Port) {
			return false, "port not exposed here"
		}
		if e.OS != "" && own.OS != "" && !sameName(e.OS, own.OS) {
			return false, "port exposed here but reporter runs a different os"
		}
		return true, "port exposed here"
	}
	if e.OS != "" && sameName(e.OS, own.OS) {
		return true, "same os " + strings.ToLower(strings.TrimSpace(own.OS))
	}
	for _, theirs := range e.Software {
		for _, mine := range own.Software {
			if !sameName(theirs.Name, mine.Name) {
				continue
			}
			if theirs.Version == "" || mine.Version == "" || sameName(theirs.Version, mine.Version) {
				return true, "same software " + strings.ToLower(strings.TrimSpace(mine.Name))
			}
		}
	}
	for _, s := range e.Services {
		if own.exposesPort(s.Port) {
			return true, "same exposed port"
		}
	}
	return false, "no shared os, software or port"
}

func (e Exposure) exposesPort(p uint16) bool {
	for _, s := range e.Services {
		if s.Port == p {
			return true
		}
	}
	return false
}

func sameName(a, b string) bool {
	a, b = strings.TrimSpace(a), strings.TrimSpace(b)
	return a != "" && strings.EqualFold(a, b)
}
