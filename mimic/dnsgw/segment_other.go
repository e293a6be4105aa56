//go:build !linux

package dnsgw

// segmentOffload says whether this system may segment UDP datagrams (see segment.go).
const segmentOffload = false

func appendSegmentSize(oob []byte, _ int) []byte { return oob }
