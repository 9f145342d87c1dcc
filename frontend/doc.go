// Package frontend turns a Dockerfile into a build graph: a solver.Vertex per
// filesystem step (image source, RUN, COPY/ADD, WORKDIR's mkdir) and the image
// config the target stage ends with. It is the only package that imports
// BuildKit's Dockerfile parser, instructions and shell packages. It knows
// nothing of how the graph runs.
package frontend
