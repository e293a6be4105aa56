package dnsgw

import (
	"encoding/binary"
	"errors"
	"unsafe"

	"golang.org/x/sys/unix"
)

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

// segmentRefused says whether err is the kernel refusing a segmented send as such (EINVAL:
// checksums off, a segment over the path's MTU; EIO: a device that cannot segment; EOPNOTSUPP)
// rather than a failure of the send (an ICMP error reported on a connected socket, a full
// buffer).
func segmentRefused(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EIO) || errors.Is(err, unix.EOPNOTSUPP)
}
