package main

import (
	"fmt"
	"strings"

	dockerconfig "github.com/docker/cli/cli/config"
)

// defaultDetachKeys is docker's detach sequence.
const defaultDetachKeys = "ctrl-p,ctrl-q"

// parseDetachKeys reads docker's --detach-keys notation: a comma-separated
// list of keys, each a single character, "ctrl-" with one of a-z @ [ \ ]
// ^ _, or "DEL". The empty string is the default sequence.
func parseDetachKeys(s string) ([]byte, error) {
	if s == "" {
		s = defaultDetachKeys
	}
	var keys []byte
	for _, k := range strings.Split(s, ",") {
		switch {
		case len(k) == 1:
			keys = append(keys, k[0])
		case k == "DEL":
			keys = append(keys, 0x7f)
		case len(k) == 6 && strings.HasPrefix(k, "ctrl-") && ctrlKey(k[5]):
			keys = append(keys, k[5]&0x1f)
		default:
			return nil, fmt.Errorf("invalid detach keys %q: unknown key %q (use a character, ctrl-a to ctrl-z, ctrl-@, ctrl-[, ctrl-\\, ctrl-], ctrl-^, ctrl-_ or DEL, separated by commas)", s, k)
		}
	}
	return keys, nil
}

// ctrlKey reports whether c has a control code: Ctrl with c gives c&0x1f.
func ctrlKey(c byte) bool {
	return c >= 'a' && c <= 'z' || c == '@' || c == '[' || c == '\\' || c == ']' || c == '^' || c == '_'
}

// detachKeys returns the detach sequence of a session: the --detach-keys
// flag's, else (for an interactive tty session, where it applies) the
// Docker config's "detachKeys", else docker's default. An unreadable
// Docker config counts as one without detach keys.
func detachKeys(flag string, ttyStdin bool) ([]byte, error) {
	if flag != "" || !ttyStdin {
		return parseDetachKeys(flag)
	}
	cf, err := dockerconfig.Load(dockerconfig.Dir())
	if err != nil || cf.DetachKeys == "" {
		return parseDetachKeys("")
	}
	keys, err := parseDetachKeys(cf.DetachKeys)
	if err != nil {
		return nil, fmt.Errorf("%s: detachKeys: %w", cf.Filename, err)
	}
	return keys, nil
}
