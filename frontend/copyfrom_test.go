package frontend

import (
	"strings"
	"testing"
)

// TestCopyFromNoVariables refuses --from through a variable, as Docker does.
func TestCopyFromNoVariables(t *testing.T) {
	for _, from := range []string{"$S", "${S}", "s$S"} {
		df := "ARG S=a\nFROM busybox AS a\nFROM busybox\nARG S\nCOPY --from=" + from + " /x /x\n"
		if _, err := convert(t, df, Options{}); err == nil || !strings.Contains(err.Error(), "variable expansion is not supported for --from") {
			t.Errorf("COPY --from=%s: %v", from, err)
		}
	}
	if _, err := convert(t, "FROM busybox AS a\nFROM busybox\nCOPY --from=a /etc/passwd /x\n", Options{}); err != nil {
		t.Errorf("COPY --from=a: %v", err)
	}
}
