// tlogcheck: an outside check of a hotline tlog-tiles export with Go's own
// golang.org/x/mod/sumdb/note and sumdb/tlog (the reference code behind
// Go's checksum database). It opens the checkpoint with the log's verifier
// key, then proves and checks every entry of every entry bundle against
// the checkpoint's root, reading hash tiles through tlog.TileHashReader,
// which verifies each tile it reads against that root.
//
// Usage: go run tlogcheck.go EXPORT_DIR VERIFIER_KEY
// Prints {"entries": N, "root": "<base64>"} and exits 0, or names what failed and exits 1.
package main

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const height = 8

// tiles reads hash tiles at their C2SP paths: Go's tile/8/L/N without the height.
type tiles struct{ dir string }

func (t tiles) Height() int { return height }

func (t tiles) ReadTiles(ts []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(ts))
	for i, tile := range ts {
		rel := strings.Replace(tile.Path(), fmt.Sprintf("tile/%d/", height), "tile/", 1)
		data, err := os.ReadFile(filepath.Join(t.dir, rel))
		if err != nil {
			return nil, err
		}
		out[i] = data
	}
	return out, nil
}

func (t tiles) SaveTiles([]tlog.Tile, [][]byte) {}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "tlogcheck: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 3 {
		fail("usage: tlogcheck EXPORT_DIR VERIFIER_KEY")
	}
	dir := os.Args[1]
	verifier, err := note.NewVerifier(os.Args[2])
	if err != nil {
		fail("verifier key: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "checkpoint"))
	if err != nil {
		fail("%v", err)
	}
	n, err := note.Open(raw, note.VerifierList(verifier))
	if err != nil {
		fail("checkpoint: %v", err)
	}
	// A C2SP checkpoint: origin, tree size, base64 root hash, then extensions.
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 {
		fail("checkpoint: %d lines", len(lines))
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("checkpoint size: %v", err)
	}
	rootBytes, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(rootBytes) != tlog.HashSize {
		fail("checkpoint root: %q", lines[2])
	}
	var root tlog.Hash
	copy(root[:], rootBytes)
	tree := tlog.Tree{N: size, Hash: root}
	hashes := tlog.TileHashReader(tree, tiles{dir})
	if th, err := tlog.TreeHash(size, hashes); err != nil || th != root {
		fail("tree hash from the tiles: %v", err)
	}
	var index int64
	for bundle := int64(0); bundle*(1<<height) < size; bundle++ {
		width := size - bundle*(1<<height)
		if width > 1<<height {
			width = 1 << height
		}
		// Go names entry bundles as data tiles, tile/8/data/N; C2SP, tile/entries/N.
		dataTile := tlog.Tile{H: height, L: -1, N: bundle, W: int(width)}
		rel := strings.Replace(dataTile.Path(), fmt.Sprintf("tile/%d/data/", height), "tile/entries/", 1)
		data, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			fail("%v", err)
		}
		for i := int64(0); i < width; i++ {
			if len(data) < 2 {
				fail("%s ends early at entry %d", rel, index)
			}
			l := int(binary.BigEndian.Uint16(data))
			if len(data) < 2+l {
				fail("%s ends early at entry %d", rel, index)
			}
			entry := data[2 : 2+l]
			data = data[2+l:]
			proof, err := tlog.ProveRecord(size, index, hashes)
			if err != nil {
				fail("entry %d: prove: %v", index, err)
			}
			if err := tlog.CheckRecord(proof, size, root, index, tlog.RecordHash(entry)); err != nil {
				fail("entry %d: %v", index, err)
			}
			index++
		}
		if len(data) != 0 {
			fail("%s: %d bytes after its last entry", rel, len(data))
		}
	}
	fmt.Printf("{\"entries\": %d, \"root\": %q}\n", index, lines[2])
}
