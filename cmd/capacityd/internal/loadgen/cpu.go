package loadgen

import (
	"bytes"
	"os"
	"runtime/metrics"
	"strconv"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc CPU times: 100 on every Linux
// this runs on.
const clockTicks = 100

// cpuSample is the CPU time used so far by this process and by the whole
// machine, read from /proc. On a shared machine the difference says how
// much of it other processes took while a figure was measured.
type cpuSample struct {
	ok      bool
	self    time.Duration // user+system time of this process
	machine time.Duration // busy time of all CPUs (everything but idle and iowait)
	steal   time.Duration // time the hypervisor ran something else on our CPUs (in machine)
}

// sampleCPU reads /proc/self/stat and /proc/stat; ok is false where they
// cannot be read or parsed.
func sampleCPU() cpuSample {
	self, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return cpuSample{}
	}
	// Fields after the command name (which may hold spaces) in parentheses;
	// utime and stime are fields 14 and 15, i.e. 12 and 13 after ")".
	i := bytes.LastIndexByte(self, ')')
	if i < 0 {
		return cpuSample{}
	}
	f := bytes.Fields(self[i+1:])
	if len(f) < 14 {
		return cpuSample{}
	}
	utime, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	stime, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return cpuSample{}
	}
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuSample{}
	}
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	cpu := bytes.Fields(line)
	if len(cpu) < 8 || string(cpu[0]) != "cpu" {
		return cpuSample{}
	}
	var busy, steal int64
	for k, v := range cpu[1:] {
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return cpuSample{}
		}
		if k == 3 || k == 4 || k >= 8 { // idle, iowait; guest time is already in user
			continue
		}
		if k == 7 {
			steal = n
		}
		busy += n
	}
	tick := time.Second / clockTicks
	return cpuSample{ok: true, self: time.Duration(utime+stime) * tick, machine: time.Duration(busy) * tick,
		steal: time.Duration(steal) * tick}
}

// coresUsed returns the average cores this process and everything else
// kept busy between a and b, over elapsed; steal is the part of others the
// hypervisor gave to other machines (a virtual machine's neighbours).
func coresUsed(a, b cpuSample, elapsed time.Duration) (self, others, steal float64, ok bool) {
	if !a.ok || !b.ok || elapsed <= 0 {
		return 0, 0, 0, false
	}
	self = (b.self - a.self).Seconds() / elapsed.Seconds()
	machine := (b.machine - a.machine).Seconds() / elapsed.Seconds()
	steal = max((b.steal-a.steal).Seconds()/elapsed.Seconds(), 0)
	return self, max(machine-self, 0), steal, true
}

// gcSample is this process's garbage-collection totals so far.
type gcSample struct {
	cycles uint64
	cpuSec float64
}

// sampleGC reads the runtime's totals of GC cycles and of the CPU they
// took (mark, assists, sweep; the runtime's own estimate).
func sampleGC() gcSample {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(s)
	var g gcSample
	if s[0].Value.Kind() == metrics.KindUint64 {
		g.cycles = s[0].Value.Uint64()
	}
	if s[1].Value.Kind() == metrics.KindFloat64 {
		g.cpuSec = s[1].Value.Float64()
	}
	return g
}

// since returns the cycles and GC CPU seconds from a to g.
func (g gcSample) since(a gcSample) (uint64, float64) {
	return g.cycles - a.cycles, max(g.cpuSec-a.cpuSec, 0)
}
