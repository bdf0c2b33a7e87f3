package sinks

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkWriteSets writes setsPerOp certificate sets as the agent does
// (key, certificate and CA file in one output directory, the record in
// the state directory; 16 writers at a time, as vault.max_parallel
// defaults to), on the disk under $CERTKEEPER_BENCH_DIR (default the
// test's temp directory, so a real file system with real fsyncs), once
// with every set committed alone (the protocol before group commit, which
// rollbacks still use) and once through WriteSet's groups. Besides ns/op
// it reports the process's CPU per op (user+system, from getrusage) and
// the calls that cost on a real disk: files created (each a new inode),
// file fsyncs and directory fsyncs.
//
//	go test ./sinks/ -run '^$' -bench WriteSets -benchtime 3x -count 5
func BenchmarkWriteSets(b *testing.B) {
	const setsPerOp, writers = 1000, 16
	for _, mode := range setWriters {
		b.Run(mode.name, func(b *testing.B) {
			var cpu time.Duration
			counts := &countingDisk{}
			disk = counts
			defer func() { disk = osDisk{} }()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				root := benchRoot(b)
				var sets [][]File
				var journals []string
				for c := range setsPerOp {
					n := fmt.Sprintf("c%d", c)
					tls := filepath.Join(root, "tls")
					sets = append(sets, []File{
						file(filepath.Join(tls, n+".key"), "KEY-"+n, 0o600),
						file(filepath.Join(tls, n+".crt"), "CERT-"+n, 0o644),
						file(filepath.Join(tls, n+".ca.pem"), "CA", 0o644),
						file(filepath.Join(root, "state", "certs", n+".json"), "RECORD-"+n, 0o600),
					})
					journals = append(journals, filepath.Join(root, "state", "certs", n+".journal"))
				}
				if err := os.MkdirAll(filepath.Join(root, "tls"), 0o755); err != nil {
					b.Fatal(err)
				}
				if err := os.MkdirAll(filepath.Join(root, "state", "certs"), 0o700); err != nil {
					b.Fatal(err)
				}
				before := cpuTime()
				b.StartTimer()
				sem := make(chan struct{}, writers)
				var wg sync.WaitGroup
				for c := range sets {
					sem <- struct{}{}
					wg.Go(func() {
						defer func() { <-sem }()
						if err := mode.write(journals[c], sets[c]); err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				cpu += cpuTime() - before
				os.RemoveAll(root)
			}
			b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(counts.creates.Load())/float64(b.N), "creates/op")
			b.ReportMetric(float64(counts.fsyncs.Load())/float64(b.N), "fsyncs/op")
			b.ReportMetric(float64(counts.dirSyncs.Load())/float64(b.N), "dirsyncs/op")
		})
	}
}

// countingDisk is the real disk, counting the calls that cost.
type countingDisk struct {
	osDisk
	creates, fsyncs, dirSyncs atomic.Int64
}

func (d *countingDisk) CreateTemp(dir *dir, pattern string) (tempFile, error) {
	f, err := d.osDisk.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	d.creates.Add(1)
	return countedFile{f, d}, nil
}

func (d *countingDisk) SyncDir(dir *dir) error {
	d.dirSyncs.Add(1)
	return d.osDisk.SyncDir(dir)
}

type countedFile struct {
	tempFile
	d *countingDisk
}

func (f countedFile) Sync() error {
	f.d.fsyncs.Add(1)
	return f.tempFile.Sync()
}

func benchRoot(b *testing.B) string {
	base := os.Getenv("CERTKEEPER_BENCH_DIR")
	if base == "" {
		base = b.TempDir()
	}
	root, err := os.MkdirTemp(base, "sets-")
	if err != nil {
		b.Fatal(err)
	}
	return root
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
