// Command mutate runs gremlins (mutation testing, pinned in this module's
// go.mod) over the packages that carry certkeeper's promises and prints,
// per package, how many mutants the tests killed, then every survivor,
// each with the reason it is accepted (survivors.txt) or marked NEW.
//
// It runs on a copy of the module's tracked and untracked-but-not-ignored
// files, so a half-finished run never leaves a mutant in the working tree
// and gremlins does not copy bin/ (Vault is 500 MB) once per worker.
//
//	go run . -root ../.. [-floor 95] ./sinks ./services ...
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

func main() {
	root := flag.String("root", "../..", "the certkeeper module to mutate")
	out := flag.String("out", "", "directory for gremlins' JSON and logs (default: <root>/bin/mutate)")
	floor := flag.Float64("floor", 0, "fail if the efficacy of all packages together (killed / (killed+lived), %) is below this, or if a survivor is NEW")
	workers := flag.Int("workers", 0, "gremlins workers (0: one per CPU)")
	coefficient := flag.Int("timeout-coefficient", 10, "a mutant's test run may take this many times the unmutated run")
	known := flag.String("survivors", "survivors.txt", "accepted survivors with their reasons")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: mutate [flags] ./pkg...")
		os.Exit(2)
	}
	if err := run(*root, *out, *known, *floor, *workers, *coefficient, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "mutate:", err)
		os.Exit(1)
	}
}

type result struct {
	pkg                                        string
	killed, lived, timedOut, uncovered, broken int
	took                                       time.Duration
	survivors                                  []survivor
}

type survivor struct {
	file, mutator, line string // line: the source line, trimmed
	pos                 string
	why                 string // from survivors.txt; empty: NEW
}

func (r result) efficacy() float64 {
	if r.killed+r.lived == 0 {
		return 100
	}
	return 100 * float64(r.killed) / float64(r.killed+r.lived)
}

func run(root, out, knownPath string, floor float64, workers, coefficient int, pkgs []string) error {
	root, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	if out == "" {
		out = filepath.Join(root, "bin", "mutate")
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	accepted, err := readAccepted(knownPath)
	if err != nil {
		return err
	}
	gremlins, err := toolPath("gremlins")
	if err != nil {
		return err
	}
	src, err := os.MkdirTemp("", "certkeeper-mutate-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(src)
	if err := copyModule(root, src); err != nil {
		return err
	}

	start := time.Now()
	var results []result
	for _, pkg := range pkgs {
		name := strings.ReplaceAll(strings.Trim(filepath.Clean(pkg), "./"), "/", "-")
		jsonPath := filepath.Join(out, name+".json")
		logPath := filepath.Join(out, name+".log")
		fmt.Printf("%-16s ", pkg)
		t0 := time.Now()
		args := []string{"unleash", "--output", jsonPath, "--timeout-coefficient", fmt.Sprint(coefficient)}
		if workers > 0 {
			args = append(args, "--workers", fmt.Sprint(workers))
		}
		args = append(args, pkg)
		if err := runLogged(gremlins, args, src, logPath); err != nil {
			return fmt.Errorf("gremlins on %s (log: %s): %w", pkg, logPath, err)
		}
		r, err := readResult(jsonPath, pkg, root, accepted)
		if err != nil {
			return err
		}
		r.took = time.Since(t0)
		fmt.Printf("%3d killed, %2d lived, %.1f%% (%s)\n", r.killed, r.lived, r.efficacy(), r.took.Round(time.Second))
		results = append(results, r)
	}

	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "package\tkilled\tlived\ttimed out\tnot covered\tnot viable\tefficacy\ttime\t")
	var total result
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%.1f%%\t%s\t\n", r.pkg, r.killed, r.lived, r.timedOut, r.uncovered, r.broken, r.efficacy(), r.took.Round(time.Second))
		total.killed += r.killed
		total.lived += r.lived
		total.timedOut += r.timedOut
		total.uncovered += r.uncovered
		total.broken += r.broken
	}
	fmt.Fprintf(tw, "all\t%d\t%d\t%d\t%d\t%d\t%.1f%%\t%s\t\n", total.killed, total.lived, total.timedOut, total.uncovered, total.broken, total.efficacy(), time.Since(start).Round(time.Second))
	tw.Flush()
	fmt.Println("\nefficacy = killed / (killed + lived); a timed-out mutant hung the tests (detected, not counted).")

	fmt.Println("\nsurvivors:")
	newOnes := 0
	for _, r := range results {
		for _, s := range r.survivors {
			why := s.why
			if why == "" {
				why = "NEW: add a test that kills it, or explain it in test/mutate/survivors.txt"
				newOnes++
			}
			fmt.Printf("  %s %s\n      %s\n      -> %s\n", s.pos, s.mutator, s.line, why)
		}
	}
	if newOnes == 0 && total.lived == 0 {
		fmt.Println("  none")
	}
	// The floor is on the whole: a small package with a few equivalent
	// mutants (internal/renewal: 2 of 14) would fail any per-package floor
	// worth having. Unexplained survivors fail it too.
	if floor > 0 && total.efficacy() < floor {
		return fmt.Errorf("efficacy %.1f%% is below the floor of %.1f%%", total.efficacy(), floor)
	}
	if floor > 0 && newOnes > 0 {
		return fmt.Errorf("%d survivor(s) are NEW: kill them with a test or explain them in test/mutate/survivors.txt", newOnes)
	}
	return nil
}

// toolPath is where `go tool` keeps the binary of a tool of this module.
func toolPath(name string) (string, error) {
	cmd := exec.Command("go", "tool", "-n", name)
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("building %s: %w", name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// copyModule copies what git would commit (tracked files, and new files not
// ignored) from root to dst.
func copyModule(root, dst string) error {
	cmd := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Stderr = os.Stderr
	list, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("listing the module's files: %w", err)
	}
	for _, rel := range strings.Split(strings.TrimRight(string(list), "\x00"), "\x00") {
		from := filepath.Join(root, rel)
		info, err := os.Lstat(from)
		if err != nil || !info.Mode().IsRegular() {
			continue // deleted in the working tree, or a symlink
		}
		to := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		data, err := os.ReadFile(from)
		if err != nil {
			return err
		}
		if err := os.WriteFile(to, data, info.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
}

// runLogged runs a command in dir with its output in logPath. -count=1:
// gremlins times the unmutated tests to set each mutant's timeout, and a
// cached result would time nothing.
func runLogged(bin string, args []string, dir, logPath string) error {
	log, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "GOFLAGS=-count=1")
	return cmd.Run()
}

type gremlinsOutput struct {
	Files []struct {
		Name      string `json:"file_name"`
		Mutations []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
			Line   int    `json:"line"`
			Column int    `json:"column"`
		} `json:"mutations"`
	} `json:"files"`
}

func readResult(path, pkg, root string, accepted map[string]string) (result, error) {
	r := result{pkg: pkg}
	data, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	var g gremlinsOutput
	if err := json.Unmarshal(data, &g); err != nil {
		return r, fmt.Errorf("reading %s: %w", path, err)
	}
	for _, f := range g.Files {
		file := filepath.ToSlash(filepath.Join(strings.TrimPrefix(filepath.Clean(pkg), "./"), f.Name))
		for _, m := range f.Mutations {
			switch m.Status {
			case "KILLED":
				r.killed++
			case "LIVED":
				r.lived++
				line := sourceLine(filepath.Join(root, file), m.Line)
				s := survivor{file: file, mutator: m.Type, line: line, pos: fmt.Sprintf("%s:%d:%d", file, m.Line, m.Column)}
				s.why = accepted[key(file, m.Type, line)]
				r.survivors = append(r.survivors, s)
			case "TIMED OUT":
				r.timedOut++
			case "NOT COVERED":
				r.uncovered++
			case "NOT VIABLE":
				r.broken++
			}
		}
	}
	return r, nil
}

func sourceLine(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for i := 1; sc.Scan(); i++ {
		if i == n {
			return strings.TrimSpace(sc.Text())
		}
	}
	return ""
}

func key(file, mutator, line string) string { return file + "|" + mutator + "|" + line }

// readAccepted reads survivors.txt: blocks of "file | MUTATOR | source
// line" followed by indented lines saying why the survivor is equivalent
// or not worth a test. Keyed by source text, not line number, so entries
// survive edits elsewhere in the file.
func readAccepted(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return map[string]string{}, nil
		}
		return nil, err
	}
	out := map[string]string{}
	var current string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#"):
			current = ""
		case strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t"):
			if current == "" {
				return nil, fmt.Errorf("%s: reason without an entry: %q", path, line)
			}
			out[current] = strings.TrimSpace(out[current] + " " + strings.TrimSpace(line))
		default:
			parts := strings.SplitN(line, " | ", 3)
			if len(parts) != 3 {
				return nil, fmt.Errorf("%s: want \"file | MUTATOR | source line\", got %q", path, line)
			}
			current = key(strings.TrimSpace(parts[0]), strings.TrimSpace(parts[1]), strings.TrimSpace(parts[2]))
			out[current] = ""
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for k, why := range out {
		if why == "" {
			return nil, fmt.Errorf("%s: %s has no reason", path, strings.ReplaceAll(k, "|", " | "))
		}
	}
	return out, nil
}
