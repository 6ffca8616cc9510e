// Command mkarchive writes the hostile archives bench/archives.sh uploads,
// streaming, so that it stays small however many entries it writes.
//
//	go run ./bench/mkarchive -kind zip -entries 4000000 -out bomb.zip
//	go run ./bench/mkarchive -kind zip -entries 4000000 -declare 2304 -out lying.zip
//	go run ./bench/mkarchive -kind targz -entries 20000 -name-len 25000 -out long.tar.gz
//	go run ./bench/mkarchive -kind targz -entries 20000 -name-len 4000 -no-end -out cut.tar.gz
//
// zip: one stored file of one byte, then a central directory listing it
// -entries times under distinct 6-character names, all pointing at that one
// local header, as zip bombs do (unzip -l lists it; 4,000,000 entries take
// 208 MB), then zip64 end records that say how many. With -declare, the end
// records say that many entries and that many 52-byte headers instead, as
// in an archive made to slip past a count check: archive/zip compares the
// count modulo 65536 only and reads headers until a bad one.
//
// targz: -entries files of one byte each, all in one directory whose path
// makes each name -name-len bytes long (components of 8 bytes, so a file
// system takes it), in a tar.gz. With -no-end the tar has no end marker,
// as if cut at an entry boundary.
package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strings"
	"time"
)

func main() {
	kind := flag.String("kind", "zip", "zip or targz")
	entries := flag.Int("entries", 4_000_000, "entries to write")
	declare := flag.Int("declare", 0, "zip: entries the end records claim (0: the real count)")
	nameLen := flag.Int("name-len", 25_000, "targz: bytes in each entry's name")
	noEnd := flag.Bool("no-end", false, "targz: leave out the tar end marker")
	out := flag.String("out", "", "file to write")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "mkarchive: -out is required")
		os.Exit(2)
	}
	f, err := os.Create(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkarchive:", err)
		os.Exit(1)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	switch *kind {
	case "zip":
		err = writeZip(w, *entries, *declare)
	case "targz":
		err = writeTarGz(w, *entries, *nameLen, *noEnd)
	default:
		err = fmt.Errorf("-kind %q: want zip or targz", *kind)
	}
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkarchive:", err)
		os.Exit(1)
	}
}

// zipDirHeader is the size of a central directory header of a 6-byte name.
const zipDirHeader = 46 + 6

func writeZip(w io.Writer, entries, declare int) error {
	le := binary.LittleEndian
	crc := crc32.ChecksumIEEE([]byte("x"))
	b := le.AppendUint32(nil, 0x04034b50) // local file header
	b = le.AppendUint16(b, 20)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint16(b, 0) // stored
	b = le.AppendUint16(b, 0)
	b = le.AppendUint16(b, 0x21) // 1980-01-01
	b = le.AppendUint32(b, crc)
	b = le.AppendUint32(b, 1)
	b = le.AppendUint32(b, 1)
	b = le.AppendUint16(b, 6)
	b = le.AppendUint16(b, 0)
	b = append(b, "000000x"...) // name, data
	if _, err := w.Write(b); err != nil {
		return err
	}
	dirOffset := uint64(len(b))
	h := make([]byte, 0, zipDirHeader)
	for i := range entries {
		h = le.AppendUint32(h[:0], 0x02014b50)
		h = le.AppendUint16(h, 3<<8|20) // made on Unix
		h = le.AppendUint16(h, 20)
		h = le.AppendUint16(h, 0)
		h = le.AppendUint16(h, 0)
		h = le.AppendUint16(h, 0)
		h = le.AppendUint16(h, 0x21)
		h = le.AppendUint32(h, crc)
		h = le.AppendUint32(h, 1)
		h = le.AppendUint32(h, 1)
		h = le.AppendUint16(h, 6)
		h = le.AppendUint32(h, 0) // extra, comment lengths
		h = le.AppendUint32(h, 0) // disk, internal attributes
		h = le.AppendUint32(h, 0o100644<<16)
		h = le.AppendUint32(h, 0) // the one local header
		h = fmt.Appendf(h, "%06x", i)
		if _, err := w.Write(h); err != nil {
			return err
		}
	}
	count, size := uint64(entries), uint64(entries)*zipDirHeader
	if declare > 0 {
		count, size = uint64(declare), uint64(declare)*zipDirHeader
	}
	end64 := dirOffset + uint64(entries)*zipDirHeader
	// The offset in the records stays the real one: with a declared
	// size, it no longer matches the end, and archive/zip, finding a
	// directory header there, reads from it.
	b = le.AppendUint32(b[:0], 0x06064b50) // zip64 end of central directory
	b = le.AppendUint64(b, 44)
	b = le.AppendUint16(b, 45)
	b = le.AppendUint16(b, 45)
	b = le.AppendUint64(b, 0)
	b = le.AppendUint64(b, count)
	b = le.AppendUint64(b, count)
	b = le.AppendUint64(b, size)
	b = le.AppendUint64(b, dirOffset)
	b = le.AppendUint32(b, 0x07064b50) // zip64 locator
	b = le.AppendUint32(b, 0)
	b = le.AppendUint64(b, end64)
	b = le.AppendUint32(b, 1)
	b = le.AppendUint32(b, 0x06054b50) // end of central directory
	b = le.AppendUint32(b, 0)
	b = le.AppendUint16(b, 0xffff)
	b = le.AppendUint16(b, 0xffff)
	b = le.AppendUint32(b, 0xffffffff)
	b = le.AppendUint32(b, 0xffffffff)
	b = le.AppendUint16(b, 0)
	_, err := w.Write(b)
	return err
}

func writeTarGz(w io.Writer, entries, nameLen int, noEnd bool) error {
	gz, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gz)
	const leaf = "/f000000"
	var dir strings.Builder
	for dir.Len()+9+len(leaf) <= nameLen {
		if dir.Len() > 0 {
			dir.WriteByte('/')
		}
		fmt.Fprintf(&dir, "d%07d", dir.Len()/9)
	}
	prefix := dir.String()
	prefix += strings.Repeat("x", max(0, nameLen-len(prefix)-len(leaf)))
	mtime := time.Unix(1700000000, 0)
	for i := range entries {
		h := &tar.Header{Name: fmt.Sprintf("%s/f%06d", prefix, i), Typeflag: tar.TypeReg, Mode: 0o644, Size: 1, ModTime: mtime, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write([]byte("x")); err != nil {
			return err
		}
	}
	if noEnd {
		err = tw.Flush()
	} else {
		err = tw.Close()
	}
	if err != nil {
		return err
	}
	return gz.Close()
}
