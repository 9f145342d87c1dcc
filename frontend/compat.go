package frontend

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// checkNode20 refuses the flags and flag values of the instruction n that
// Docker 20.10's builder refuses and the newer parser kiln uses accepts.
// It runs on every instruction of the Dockerfile and on each ONBUILD
// trigger when it runs.
func checkNode20(n *parser.Node) error {
	if err := checkFlags(n); err != nil {
		return err
	}
	return checkHealthcheckFlags(n)
}

// flags20 returns the flags Docker 20.10's builder knows for an
// instruction that takes flags (lower case), and false for the others. The
// newer parser kiln uses knows more (RUN --network and --security, COPY and
// ADD --link, ADD --checksum and --keep-git-dir, HEALTHCHECK
// --start-interval, ...), which 20.10 refuses as unknown flags, and so
// does kiln.
func flags20(verb string) ([]string, bool) {
	switch verb {
	case "from":
		return []string{"platform"}, true
	case "run":
		return []string{"mount"}, true
	case "copy":
		return []string{"from", "chown", "chmod"}, true
	case "add":
		return []string{"chown", "chmod"}, true
	case "healthcheck":
		return []string{"interval", "timeout", "start-period", "retries"}, true
	}
	return nil, false
}

// checkFlags refuses the flags of n that Docker 20.10's builder does not
// know (see flags20). Instructions missing from flags20 are left to the
// parser, which refuses any flag on them.
func checkFlags(n *parser.Node) error {
	verb := strings.ToLower(n.Value)
	known, ok := flags20(verb)
	if !ok {
		return nil
	}
	for _, f := range n.Flags {
		name, val, _ := strings.Cut(strings.TrimPrefix(f, "--"), "=")
		if verb == "run" && name == "mount" {
			if err := checkMountKeys(val); err != nil {
				return err
			}
		}
		if !slices.Contains(known, name) {
			hint := ""
			if verb == "run" && name == "network" {
				hint = "; choose the network of every RUN with kiln build --network"
			}
			return fmt.Errorf("unknown flag %s --%s: kiln follows the Dockerfile syntax of Docker 20.10, which has no such flag%s", strings.ToUpper(verb), name, hint)
		}
	}
	return nil
}

// mountKeys20 lists the RUN --mount options Docker 20.10's builder knows;
// it refuses others (size=, env=, ...) as unexpected keys.
func mountKeys20() []string {
	return []string{"type", "from", "source", "src", "target", "dst", "destination",
		"readonly", "ro", "readwrite", "rw", "required", "id", "sharing", "mode", "uid", "gid"}
}

// checkMountKeys refuses a RUN --mount value with an option Docker 20.10
// does not know. The value is CSV, as the parser reads it; what does not
// parse is left to the parser's own error.
func checkMountKeys(val string) error {
	fields, err := csv.NewReader(strings.NewReader(val)).Read()
	if err != nil {
		return nil
	}
	for _, f := range fields {
		key, _, _ := strings.Cut(f, "=")
		key = strings.ToLower(strings.TrimSpace(key))
		if !slices.Contains(mountKeys20(), key) {
			return fmt.Errorf("RUN --mount: unexpected key %q in %q: kiln follows the Dockerfile syntax of Docker 20.10, which has no such option", key, f)
		}
	}
	return nil
}

// checkHealthcheckFlags refuses what Docker 20.10's builder refuses in
// HEALTHCHECK options and the newer parser kiln uses accepts: --retries=0
// and zero durations ("0s"), which 20.10 reads as "less than 1ms".
func checkHealthcheckFlags(n *parser.Node) error {
	if !strings.EqualFold(n.Value, "healthcheck") {
		return nil
	}
	for _, f := range n.Flags {
		name, val, ok := strings.Cut(strings.TrimPrefix(f, "--"), "=")
		if !ok {
			continue
		}
		switch name {
		case "retries":
			if r, err := strconv.ParseInt(val, 10, 32); err == nil && r == 0 {
				return errors.New("--retries must be at least 1 (not 0)")
			}
		case "interval", "timeout", "start-period", "start-interval":
			if d, err := time.ParseDuration(val); err == nil && d == 0 {
				return fmt.Errorf("interval %q cannot be less than 1ms", name)
			}
		}
	}
	return nil
}

// checkSubstitutions refuses what Docker 20.10's builder refuses in a word
// the Dockerfile frontend expands: a ${NAME...} form other than ${NAME},
// ${NAME:-word} and ${NAME:+word}. The newer lexer kiln uses also knows
// ${NAME-word}, ${NAME?word}, ${NAME#pattern}, ${NAME/a/b} and more, which
// 20.10 reports as errors. Quoting and escapes are followed as the lexer
// follows them: nothing inside single quotes or after the escape character
// is expanded.
func checkSubstitutions(word string, escape rune) error {
	rs := []rune(word)
	inDouble := false
	for i := 0; i < len(rs); i++ {
		switch ch := rs[i]; {
		case ch == escape:
			i++ // the next character is literal
		case ch == '\'' && !inDouble:
			for i++; i < len(rs) && rs[i] != '\''; i++ {
			}
		case ch == '"':
			inDouble = !inDouble
		case ch == '$' && i+1 < len(rs) && rs[i+1] == '{':
			j := i + 2
			if j < len(rs) && rs[j] >= '0' && rs[j] <= '9' {
				for j < len(rs) && rs[j] >= '0' && rs[j] <= '9' {
					j++
				}
			} else {
				for j < len(rs) && (rs[j] == '_' || unicode.IsLetter(rs[j]) || unicode.IsDigit(rs[j])) {
					j++
				}
			}
			if j >= len(rs) {
				return nil // unterminated: the lexer reports it
			}
			switch rs[j] {
			case '}':
			case ':':
				if j+1 < len(rs) && rs[j+1] != '-' && rs[j+1] != '+' {
					return fmt.Errorf("failed to process %q: unsupported modifier (%c) in substitution (kiln follows Docker 20.10, which has only ${NAME:-word} and ${NAME:+word})", word, rs[j+1])
				}
			default:
				return fmt.Errorf("failed to process %q: missing ':' in substitution (kiln follows Docker 20.10, which has only ${NAME:-word} and ${NAME:+word})", word)
			}
			i = j
		}
	}
	return nil
}

// heredocMark stands in for "<<" on the lines of an unterminated heredoc
// while the parser reads them (two private-use runes no Dockerfile
// holds).
const heredocMark = "\uE000\uE001"

// parseDockerfile parses dockerfile with heredocs, except where a heredoc
// is never terminated: Docker 20.10's parser knew no heredocs, so there
// "RUN cat <<EOF > f" is an ordinary command (the shell warns and goes on)
// and the lines after it are instructions. Such a line is parsed again
// with its "<<" hidden from the parser and given back in the result.
func parseDockerfile(dockerfile []byte) (*parser.Result, error) {
	lines := strings.SplitAfter(string(dockerfile), "\n")
	hidden := false
	for range 100 {
		res, err := parser.Parse(strings.NewReader(strings.Join(lines, "")))
		line := unterminatedHeredoc(err)
		if line == 0 || line > len(lines) || !strings.Contains(lines[line-1], "<<") {
			if err == nil && hidden {
				restoreHeredocs(res.AST)
			}
			return res, err
		}
		// The instruction's lines: it goes on while a line ends with
		// the escape character (either of the two the parser allows).
		for i := line - 1; i < len(lines); i++ {
			lines[i] = strings.ReplaceAll(lines[i], "<<", heredocMark)
			t := strings.TrimRight(lines[i], " \t\r\n")
			if !strings.HasSuffix(t, "\\") && !strings.HasSuffix(t, "`") {
				break
			}
		}
		hidden = true
	}
	return parser.Parse(bytes.NewReader(dockerfile))
}

// unterminatedHeredoc returns the line of the instruction err reports as an
// unterminated heredoc, or 0.
func unterminatedHeredoc(err error) int {
	var le *parser.LocationError
	if err == nil || !strings.Contains(err.Error(), "unterminated heredoc") || !errors.As(err, &le) {
		return 0
	}
	if len(le.Locations) == 0 || len(le.Locations[0]) == 0 {
		return 0
	}
	return le.Locations[0][0].Start.Line
}

// restoreHeredocs puts "<<" back where parseDockerfile hid it.
func restoreHeredocs(n *parser.Node) {
	if n == nil {
		return
	}
	n.Value = strings.ReplaceAll(n.Value, heredocMark, "<<")
	n.Original = strings.ReplaceAll(n.Original, heredocMark, "<<")
	for i := range n.Flags {
		n.Flags[i] = strings.ReplaceAll(n.Flags[i], heredocMark, "<<")
	}
	for _, c := range n.Children {
		restoreHeredocs(c)
	}
	restoreHeredocs(n.Next)
}
