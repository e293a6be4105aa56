package dnsgw

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

// segmentOffload says whether this system may segment UDP datagrams (see segment.go).
const segmentOffload = true

// appendSegmentSize appends the control message UDP_SEGMENT of size to oob.
func appendSegmentSize(oob []byte, size int) []byte {
	off := len(oob)
	oob = append(oob, make([]byte, unix.CmsgSpace(2))...)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[off]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[off+unix.CmsgLen(0):], uint16(size))
	return oob
}
