package main

import "testing"

// TestHeredocs builds COPY heredocs (expanded unless the delimiter is
// quoted, --chmod, several into a directory) and RUN heredocs (a script
// with its own #! interpreter runs as a file, <<- strips leading tabs).
func TestHeredocs(t *testing.T) {
	e := newEnv(t)
	ctx := writeCtx(t, map[string]string{"Dockerfile": `FROM busybox
ARG NAME=world
WORKDIR /app
COPY <<EOF greeting.txt
hello $NAME
EOF
COPY --chmod=755 <<'RAW' <<two.sh /bin/
raw $NAME
RAW
#!/bin/sh
echo two
two.sh
RUN <<EOF
#!/bin/sh
echo "script $0" > /shebang
EOF
RUN <<-EOF
	echo chomped > /chomp
EOF
`})
	e.must("build", "-t", "h:1", ctx)
	for _, c := range []struct{ cmd, want string }{
		{"cat /app/greeting.txt /bin/RAW", "hello world\nraw $NAME\n"},
		{"stat -c '%a %u' /app/greeting.txt /bin/RAW /bin/two.sh", "644 0\n755 0\n755 0\n"},
		{"/bin/two.sh", "two\n"},
		{"cat /shebang /chomp", "script /dev/pipes/EOF\nchomped\n"},
		{"ls -A /dev | grep -c pipes; true", "0\n"},
	} {
		if got := e.must("run", "--rm", "h:1", "sh", "-c", c.cmd).stdout; got != c.want {
			t.Errorf("%s: %q, want %q", c.cmd, got, c.want)
		}
	}
	// A heredoc's content is its cache key: an edit rebuilds.
	id1 := e.must("build", "-q", "-t", "h:1", ctx).stdout
	ctx2 := writeCtx(t, map[string]string{"Dockerfile": "FROM busybox\nCOPY <<EOF /f\none\nEOF\n"})
	ctx3 := writeCtx(t, map[string]string{"Dockerfile": "FROM busybox\nCOPY <<EOF /f\ntwo\nEOF\n"})
	e.must("build", "-t", "h:2", ctx2)
	e.must("build", "-t", "h:3", ctx3)
	if got := e.must("run", "--rm", "h:3", "cat", "/f").stdout; got != "two\n" || id1 == "" {
		t.Errorf("second heredoc build: /f = %q", got)
	}
}
