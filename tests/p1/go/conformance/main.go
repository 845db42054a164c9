// Preview-1 conformance for Go (GOOS=wasip1): args, environ, clocks, random, files, directories,
// stdio and exit codes, printed so that every host gives the same output.
package main

import (
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"time"
)

func main() {
	for i, a := range os.Args[1:] {
		fmt.Printf("arg %d: %s\n", i+1, a)
	}
	fmt.Printf("env GREETING=%q\n", os.Getenv("GREETING"))
	_, set := os.LookupEnv("MISSING")
	fmt.Printf("env MISSING set: %v\n", set)

	start := time.Now()
	time.Sleep(20 * time.Millisecond)
	fmt.Printf("slept at least 20ms: %v\n", time.Since(start) >= 20*time.Millisecond)
	fmt.Printf("wall clock after 2020: %v\n", time.Now().Year() >= 2020)
	buf := make([]byte, 32)
	_, err := rand.Read(buf)
	fmt.Printf("random: %v\n", err == nil)

	check := func(what string, err error) {
		if err != nil {
			fmt.Printf("%s: %v\n", what, err)
		} else {
			fmt.Printf("%s: ok\n", what)
		}
	}
	check("write", os.WriteFile("/data/new.txt", []byte("line one\nline two\n"), 0o644))
	f, err := os.OpenFile("/data/new.txt", os.O_APPEND|os.O_WRONLY, 0)
	check("open append", err)
	if err == nil {
		f.WriteString("appended\n")
		f.Close()
	}
	data, err := os.ReadFile("/data/new.txt")
	check("read", err)
	fmt.Printf("content %q\n", data)
	f, _ = os.Open("/data/new.txt")
	pos, _ := f.Seek(5, io.SeekStart)
	small := make([]byte, 3)
	n, _ := f.Read(small)
	fmt.Printf("seek %d read %q\n", pos, small[:n])
	end, _ := f.Seek(0, io.SeekEnd)
	fmt.Printf("end %d\n", end)
	st, _ := f.Stat()
	fmt.Printf("stat size %d mode %v\n", st.Size(), st.Mode().IsRegular())
	f.Close()
	_, err = os.Stat("/data/missing")
	fmt.Printf("stat missing is not-exist: %v\n", os.IsNotExist(err))
	check("mkdir", os.Mkdir("/data/sub", 0o755))
	fmt.Printf("mkdir again exists: %v\n", os.IsExist(os.Mkdir("/data/sub", 0o755)))
	check("rename", os.Rename("/data/new.txt", "/data/sub/moved.txt"))
	check("symlink", os.Symlink("moved.txt", "/data/sub/link"))
	target, err := os.Readlink("/data/sub/link")
	fmt.Printf("readlink %q %v\n", target, err)
	lst, _ := os.Lstat("/data/sub/link")
	fmt.Printf("lstat is symlink: %v\n", lst.Mode()&os.ModeSymlink != 0)
	check("truncate", os.Truncate("/data/sub/moved.txt", 4))
	st, _ = os.Stat("/data/sub/moved.txt")
	fmt.Printf("size after truncate: %d\n", st.Size())
	for _, dir := range []string{"/data", "/data/sub"} {
		entries, err := os.ReadDir(dir)
		check("readdir "+dir, err)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name()+map[bool]string{true: "/", false: ""}[e.IsDir()])
		}
		sort.Strings(names)
		fmt.Printf("ls %s: %v\n", dir, names)
	}
	fmt.Printf("remove non-empty fails: %v\n", os.Remove("/data/sub") != nil)
	check("remove all", os.RemoveAll("/data/sub"))
	_, err = os.Open("/etc/passwd")
	fmt.Printf("outside preopen refused: %v\n", err != nil)
	input, err := os.ReadFile("/data/input.txt")
	fmt.Printf("input.txt %q %v\n", input, err)

	in, _ := io.ReadAll(os.Stdin)
	fmt.Printf("stdin bytes: %d\n", len(in))
	fmt.Fprintln(os.Stderr, "to stderr")
	code := 0
	if len(os.Args) > 1 {
		code, _ = strconv.Atoi(os.Args[len(os.Args)-1])
	}
	os.Exit(code)
}
