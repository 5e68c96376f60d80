package main

import (
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

func sortDurations(ds []time.Duration) { slices.Sort(ds) }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// row is one printed metric: its value per system.
type row struct {
	label  string
	unit   string
	value  func(r result) float64
	format string
	target string
}

func throughputTrips(r result) float64 {
	return float64(r.enqueue.client.trips+r.process.client.trips) / float64(r.enqueue.jobs)
}

func throughputReads(r result) float64 {
	return float64(r.enqueue.server.reads+r.process.server.reads) / float64(r.enqueue.jobs)
}

func throughputCmds(r result) float64 {
	return float64(r.enqueue.server.commands+r.process.server.commands) / float64(r.enqueue.jobs)
}

var rows = []row{
	{"enqueue rate, median round", "jobs/s", func(r result) float64 { return r.enqueueRate }, "%.0f", ""},
	{"processing rate, median round", "jobs/s", func(r result) float64 { return r.processRate }, "%.0f", ">= 3x asynq"},
	{"latency p50 (add -> handler start)", "ms", func(r result) float64 { return ms(r.p50) }, "%.3f", "< 1 ms"},
	{"latency p99", "ms", func(r result) float64 { return ms(r.p99) }, "%.3f", "< 5 ms"},
	{"latency max", "ms", func(r result) float64 { return ms(r.max) }, "%.3f", ""},
	{"round trips/job, enqueue+process (client hook)", "", throughputTrips, "%.3f", "<= 2"},
	{"  enqueue phase", "", func(r result) float64 { return r.enqueue.tripsPerJob() }, "%.3f", ""},
	{"  process phase", "", func(r result) float64 { return r.process.tripsPerJob() }, "%.3f", ""},
	{"  latency phase (incl. idle polling)", "", func(r result) float64 { return r.latencyRun.tripsPerJob() }, "%.3f", ""},
	{"request reads/job, enqueue+process (INFO total_reads_processed)", "", throughputReads, "%.3f", ""},
	{"  latency phase", "", func(r result) float64 { return r.latencyRun.readsPerJob() }, "%.3f", ""},
	{"commands/job, enqueue+process (INFO, incl. inside Lua)", "", throughputCmds, "%.3f", ""},
	{"  latency phase", "", func(r result) float64 { return r.latencyRun.cmdsPerJob() }, "%.3f", ""},
	{"CPU per job, process phase: this process", "µs", func(r result) float64 { return r.process.clientCPUPerJob() }, "%.1f", ""},
	{"  redis-server", "µs", func(r result) float64 { return r.process.serverCPUPerJob() }, "%.1f", ""},
	{"CPU per job, enqueue phase: this process", "µs", func(r result) float64 { return r.enqueue.clientCPUPerJob() }, "%.1f", ""},
	{"  redis-server", "µs", func(r result) float64 { return r.enqueue.serverCPUPerJob() }, "%.1f", ""},
	{"redelivered jobs (process+latency)", "", func(r result) float64 { return float64(r.process.dupes + r.latencyRun.dupes) }, "%.0f", ""},
}

func find(results []result, name string) (result, bool) {
	for _, r := range results {
		if r.name == name && r.err == nil {
			return r, true
		}
	}
	return result{}, false
}

func printResults(w io.Writer, cfg config, results []result) {
	for _, r := range results {
		fmt.Fprintf(w, "%s setup:\n", r.name)
		for _, n := range r.notes {
			fmt.Fprintf(w, "  %s\n", n)
		}
	}
	fmt.Fprintln(w)

	ours, okOurs := find(results, "shiftflow")
	theirs, okTheirs := find(results, "asynq")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	var head []string
	head = append(head, "metric")
	for _, r := range results {
		head = append(head, r.name)
	}
	if okOurs && okTheirs {
		head = append(head, "ours/asynq")
	}
	head = append(head, "target")
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, rw := range rows {
		cells := []string{rw.label + unitSuffix(rw.unit)}
		for _, r := range results {
			if r.err != nil {
				cells = append(cells, "error")
				continue
			}
			cells = append(cells, fmt.Sprintf(rw.format, rw.value(r)))
		}
		if okOurs && okTheirs {
			a, b := rw.value(ours), rw.value(theirs)
			if b != 0 {
				cells = append(cells, fmt.Sprintf("%.3gx", a/b))
			} else {
				cells = append(cells, "-")
			}
		}
		cells = append(cells, rw.target)
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	_ = tw.Flush()

	fmt.Fprintln(w)
	fmt.Fprintln(w, "rates per round, in the order run (jobs/s):")
	for _, r := range results {
		var enq, proc []string
		for i := range r.processRounds {
			enq = append(enq, fmt.Sprintf("%.0f", r.enqueueRounds[i].rate()))
			proc = append(proc, fmt.Sprintf("%.0f", r.processRounds[i].rate()))
		}
		fmt.Fprintf(w, "  %s: enqueue %s; processing %s\n", r.name, strings.Join(enq, " "), strings.Join(proc, " "))
	}

	fmt.Fprintln(w)
	fmt.Fprintln(w, "server commands per job by command, with Redis time per job in brackets (INFO commandstats delta; includes commands run inside Lua scripts, whose time is also inside the script's, and any other client's traffic):")
	for _, r := range results {
		if r.err != nil {
			fmt.Fprintf(w, "  %s: %v\n", r.name, r.err)
			continue
		}
		fmt.Fprintf(w, "  %s enqueue: %s\n", r.name, r.enqueue.server.breakdown(r.enqueue.jobs))
		fmt.Fprintf(w, "  %s process: %s\n", r.name, r.process.server.breakdown(r.process.jobs))
		fmt.Fprintf(w, "  %s latency: %s\n", r.name, r.latencyRun.server.breakdown(r.latencyRun.jobs))
	}

	// Client round trips and server request reads agree to a fraction of a
	// percent when this run is the server's only client; a gap means other
	// clients were busy and the server-side figures above include them.
	var noisy []string
	for _, r := range results {
		if r.err != nil {
			continue
		}
		for _, ph := range []struct {
			name string
			p    phaseStats
		}{{"enqueue", r.enqueue}, {"process", r.process}, {"latency", r.latencyRun}} {
			if extra := ph.p.server.reads - ph.p.client.trips; extra > 50 && extra > ph.p.client.trips/50 {
				noisy = append(noisy, fmt.Sprintf("%s %s (+%d reads)", r.name, ph.name, extra))
			}
		}
	}
	if len(noisy) > 0 {
		fmt.Fprintf(w, "\nWARNING: other clients used the server during: %s.\n", strings.Join(noisy, ", "))
		fmt.Fprintln(w, "  The server-side figures (reads, commands, redis-server CPU, per-command breakdown) of those phases include their traffic;")
		fmt.Fprintln(w, "  the rates, latencies and client round trips do not. Use -redis-server for clean server-side figures.")
	}

	if !okOurs {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "targets:")
	check := func(ok bool, format string, args ...any) {
		mark := "MISS"
		if ok {
			mark = "ok  "
		}
		fmt.Fprintf(w, "  %s %s\n", mark, fmt.Sprintf(format, args...))
	}
	if okTheirs {
		ratio := ours.processRate / theirs.processRate
		check(ratio >= 3, "processing rate %.0f/s is %.2fx asynq's %.0f/s (target >= 3x)", ours.processRate, ratio, theirs.processRate)
	}
	check(ours.p50 < time.Millisecond, "latency p50 %.3f ms (target < 1 ms)", ms(ours.p50))
	check(ours.p99 < 5*time.Millisecond, "latency p99 %.3f ms (target < 5 ms)", ms(ours.p99))
	check(throughputTrips(ours) <= 2, "round trips per job %.3f (target <= 2)", throughputTrips(ours))
}

func unitSuffix(u string) string {
	if u == "" {
		return ""
	}
	return " (" + u + ")"
}
