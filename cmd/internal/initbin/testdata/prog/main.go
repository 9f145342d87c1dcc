// Command prog is a Go program for initbin's tests to build with and
// without a build token.
package main

func main() {}
