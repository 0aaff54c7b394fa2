package orchestration

import (
	"strconv"
	"strings"
)

// compareVersions orders two version strings the way the rules need:
// dotted release numbers compared numerically ("0.8.10" > "0.8.4"), a
// pre-release or dev suffix ("3.4.11rc1", "3.4.11.dev2") sorting before
// its release and a post-release or local suffix ("3.4.11.post1",
// "3.4.11+abc") after it. A string without a leading number sorts before
// every real version, so an unparsable client version counts as old.
func compareVersions(a, b string) int {
	ra, sa := parseVersion(a)
	rb, sb := parseVersion(b)
	for i := 0; i < max(len(ra), len(rb)); i++ {
		var x, y int
		if i < len(ra) {
			x = ra[i]
		}
		if i < len(rb) {
			y = rb[i]
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	if len(ra) == 0 || len(rb) == 0 {
		switch {
		case len(ra) == len(rb):
			return 0
		case len(ra) == 0:
			return -1
		default:
			return 1
		}
	}
	return suffixRank(sa) - suffixRank(sb)
}

// parseVersion splits "v1.2.3rc1" into [1 2 3] and "rc1".
func parseVersion(v string) ([]int, string) {
	v = strings.TrimPrefix(strings.TrimSpace(strings.ToLower(v)), "v")
	var release []int
	for {
		end := 0
		for end < len(v) && v[end] >= '0' && v[end] <= '9' {
			end++
		}
		if end == 0 {
			break
		}
		n, err := strconv.Atoi(v[:end])
		if err != nil {
			break
		}
		release = append(release, n)
		v = v[end:]
		if len(v) > 1 && v[0] == '.' && v[1] >= '0' && v[1] <= '9' {
			v = v[1:]
			continue
		}
		break
	}
	return release, strings.TrimLeft(v, ".-_")
}

// suffixRank: pre-releases < the release < post/local releases.
func suffixRank(s string) int {
	switch {
	case s == "":
		return 0
	case strings.HasPrefix(s, "post"), strings.HasPrefix(s, "+"):
		return 1
	default:
		return -1
	}
}
