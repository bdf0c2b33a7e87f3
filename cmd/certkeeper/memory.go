package main

import "runtime/debug"

// releaseStartupMemory hands back to the OS what loading the config and
// the first pass over every certificate needed but the daemon no longer
// does. With 1,000 certificates those two bursts grow the heap to about
// 40 MB while the agent then holds about 7 MB; the runtime would keep the
// difference mapped until a scavenger cycle, and the daemon then sleeps for
// hours. Called once, after the first pass.
func releaseStartupMemory() { debug.FreeOSMemory() }
