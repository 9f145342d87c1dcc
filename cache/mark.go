package cache

import "github.com/opencontainers/go-digest"

// NodeKind says what a Node stands for.
type NodeKind int

// Kinds of nodes in the garbage-collection graph.
const (
	// NodeBlob is a file under blobs/, named by its digest.
	NodeBlob NodeKind = iota + 1
	// NodeSnapshot is a directory under snapshots/, named by chain ID.
	NodeSnapshot
)

// String names the kind, for tests and logs.
func (k NodeKind) String() string {
	switch k {
	case NodeBlob:
		return "blob"
	case NodeSnapshot:
		return "snapshot"
	default:
		return "unknown"
	}
}

// Node is one thing Prune keeps or removes.
type Node struct {
	Kind   NodeKind
	Digest digest.Digest
}

// String shows the node as kind:digest.
func (n Node) String() string { return n.Kind.String() + ":" + string(n.Digest) }

// Mark returns every node reachable from roots by following refs (a node's
// outgoing edges): the nodes Prune keeps. It is a pure function; cycles and
// references to nodes that do not exist are fine.
func Mark(roots []Node, refs map[Node][]Node) map[Node]bool {
	marked := make(map[Node]bool)
	stack := append([]Node(nil), roots...)
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if marked[n] {
			continue
		}
		marked[n] = true
		for _, m := range refs[n] {
			if !marked[m] {
				stack = append(stack, m)
			}
		}
	}
	return marked
}
