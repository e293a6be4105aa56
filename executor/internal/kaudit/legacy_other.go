//go:build !amd64

package kaudit

var (
	legacyWriteCalls []int
	legacyOpenCalls  = map[int]int{}
	legacyCallNames  = map[int]string{}
)
