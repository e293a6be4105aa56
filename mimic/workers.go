package mimic

import "time"

// Executor requests run on a pool of goroutines that stay alive between requests, rather than
// on a fresh goroutine each. A fresh goroutine starts with a small stack, and the path of an
// executor request (the fetch, the h1 client, the connection's read) is deeper than that, so
// every request paid for growing the stack, which copies it, two or three times per vote. A
// worker's stack is grown once. Workers are started on demand (as many as executor requests
// run at once: at most k × MaxInFlight, plus stragglers) and each leaves after workerIdle
// without work (so also at the latest workerIdle after the gateway closes: a third case in
// the worker's select, to leave at once, cost more than the stack growth it saves).

// workerIdle is how long an idle worker waits for the next executor request.
const workerIdle = 20 * time.Second

type workers struct {
	jobs chan fetchJob
}

func newWorkers() workers { return workers{jobs: make(chan fetchJob)} }

// dispatch runs j on an idle worker, or on a new one when none is idle.
func (g *Gateway) dispatch(j fetchJob) {
	select {
	case g.workers.jobs <- j:
	default:
		go g.work(j)
	}
}

// work runs j, then whatever comes next, until it has been idle for workerIdle.
func (g *Gateway) work(j fetchJob) {
	var idle *time.Timer
	for {
		g.fetch(j) // j is dead from here: nothing of the finished request stays reachable while idle
		if idle == nil {
			idle = time.NewTimer(workerIdle)
		} else {
			idle.Reset(workerIdle)
		}
		select {
		case j = <-g.workers.jobs:
			idle.Stop()
		case <-idle.C:
			return
		}
	}
}
