// Package procfs reads what Linux's /proc says of a process's memory, for
// the tests and benchmarks that measure it.
//
// Promises: MappedFiles returns, for each file a process maps, the bytes
// of it resident in the process (the sum of the Rss lines of the file's
// mappings in /proc/PID/smaps), keyed by the file's path as the kernel
// prints it.
package procfs

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// MappedFiles is the resident size, in bytes, of each file process pid
// maps (pid 0: this process), from /proc/PID/smaps. Anonymous mappings and
// the kernel's pseudo-files ([heap], [stack], …) are left out.
func MappedFiles(pid int) (map[string]int64, error) {
	who := "self"
	if pid != 0 {
		who = strconv.Itoa(pid)
	}
	b, err := os.ReadFile("/proc/" + who + "/smaps")
	if err != nil {
		return nil, err
	}
	rss := map[string]int64{}
	file := ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			// A mapping's header: address range, perms, offset, device,
			// inode, and the path of a file mapping.
			file = ""
			if len(f) >= 6 && strings.HasPrefix(f[5], "/") {
				file = strings.Join(f[5:], " ")
			}
		case file != "" && len(f) == 3 && f[0] == "Rss:":
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("procfs: %s smaps: %q: %w", who, line, err)
			}
			rss[file] += kb << 10
		}
	}
	return rss, nil
}
