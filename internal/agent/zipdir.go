package agent

import (
	"archive/zip"
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A zip's central directory is parsed whole by zip.NewReader, which keeps
// a zip.File of some 200 bytes plus the name for every entry, and reads
// headers until one is bad, whatever the end record says: a 200 MB zip of
// 4 million entries costs most of a gigabyte before the entry cap could
// act. So the directory is measured first, with bounded memory, as
// archive/zip will read it, and refused when over the caps; zip.NewReader
// then only ever sees a directory within them.

const (
	zipEndLen       = 22 // end of central directory record, without comment
	zip64LocLen     = 20 // zip64 end of central directory locator
	zip64EndLen     = 56 // zip64 end of central directory record
	zipDirHeaderLen = 46 // central directory header, without name, extra, comment

	zipEndSig       = 0x06054b50
	zip64LocSig     = 0x07064b50
	zip64EndSig     = 0x06064b50
	zipDirHeaderSig = 0x02014b50
)

// zipDirBytesPerEntry bounds the central directory at maxEntries of these:
// a 46-byte header and 256 bytes for the name, extra fields (timestamps,
// Unix ids: about 24 bytes from Info-ZIP) and comment; the average real
// entry needs well under that. 60 MB for the default 200,000 entries.
const zipDirBytesPerEntry = zipDirHeaderLen + 256

// zipEnd is what a zip's end records say, found as archive/zip finds them.
type zipEnd struct {
	entries uint64
	dirSize uint64
	// starts is where archive/zip may start reading the directory: where
	// the end record says, or, when archive/zip second-guesses an offset
	// that assumes data before the zip, the offset itself (both are
	// measured then).
	starts []int64
}

func errNotZip(why string) error {
	return fmt.Errorf("%w: not a zip file: %s", errBadInput, why)
}

// readZipEnd reads the end of central directory record and, when it says
// so, the zip64 locator and record, the way archive/zip's readDirectoryEnd
// does (Go 1.26), so that both agree on the directory that will be parsed.
func readZipEnd(r io.ReaderAt, size int64) (zipEnd, error) {
	var (
		buf    []byte
		endOff int64
	)
	// The record is in the last 1 KiB, or else in the last 65 KiB (a
	// comment is at most 64 KiB).
	for i, n := range []int64{1024, 65 * 1024} {
		if n > size {
			n = size
		}
		buf = make([]byte, n)
		if _, err := r.ReadAt(buf, size-n); err != nil && err != io.EOF {
			return zipEnd{}, fmt.Errorf("read the zip's end: %w", err)
		}
		if p := findZipEnd(buf); p >= 0 {
			buf, endOff = buf[p:], size-n+int64(p)
			break
		}
		if i == 1 || n == size {
			return zipEnd{}, errNotZip("no end of central directory record")
		}
	}
	le := binary.LittleEndian
	end := zipEnd{
		entries: uint64(le.Uint16(buf[10:])),
		dirSize: uint64(le.Uint32(buf[12:])),
	}
	dirOffset := uint64(le.Uint32(buf[16:]))
	// archive/zip looks for zip64 when a field is at its maximum; it tests
	// the size against 0xffff, not 0xffffffff, and so does this.
	if end.entries == 0xffff || end.dirSize == 0xffff || dirOffset == 0xffffffff {
		if loc := endOff - zip64LocLen; loc >= 0 {
			b := make([]byte, zip64LocLen)
			if _, err := r.ReadAt(b, loc); err != nil {
				return zipEnd{}, errNotZip(fmt.Sprintf("reading the zip64 locator: %v", err))
			}
			if le.Uint32(b) == zip64LocSig && le.Uint32(b[4:]) == 0 && le.Uint32(b[16:]) == 1 {
				p := int64(le.Uint64(b[8:]))
				rec := make([]byte, zip64EndLen)
				if _, err := r.ReadAt(rec, p); err != nil {
					return zipEnd{}, errNotZip(fmt.Sprintf("reading the zip64 end record: %v", err))
				}
				if le.Uint32(rec) != zip64EndSig {
					return zipEnd{}, errNotZip("no zip64 end record where its locator points")
				}
				endOff = p
				end.entries = le.Uint64(rec[32:])
				end.dirSize = le.Uint64(rec[40:])
				dirOffset = le.Uint64(rec[48:])
			}
		}
	}
	const maxInt64 = 1<<63 - 1
	if end.dirSize > maxInt64 || dirOffset > maxInt64 {
		return zipEnd{}, errNotZip("directory size or offset out of range")
	}
	base := endOff - int64(end.dirSize) - int64(dirOffset)
	start := base + int64(dirOffset)
	// Refusing the caps first gives the clearer message for the end
	// record of a zip bomb, whether or not its offsets add up.
	end.starts = []int64{start}
	if start < 0 || start >= size {
		end.starts = nil
		return end, nil
	}
	// archive/zip uses the offset as it stands when a directory header is
	// there; the first four bytes say whether one may be.
	if base > 0 {
		b := make([]byte, 4)
		if _, err := r.ReadAt(b, int64(dirOffset)); err == nil && le.Uint32(b) == zipDirHeaderSig {
			end.starts = append(end.starts, int64(dirOffset))
		}
	}
	return end, nil
}

// findZipEnd is archive/zip's findSignatureInBlock: the last record
// signature in b, if its comment fits.
func findZipEnd(b []byte) int {
	for i := len(b) - zipEndLen; i >= 0; i-- {
		if binary.LittleEndian.Uint32(b[i:]) == zipEndSig {
			n := int(binary.LittleEndian.Uint16(b[i+zipEndLen-2:]))
			if n+zipEndLen+i > len(b) {
				return -1
			}
			return i
		}
	}
	return -1
}

// scanZipDir reads the central directory from start as archive/zip does,
// header after header until one is not a directory header or the file
// ends, and returns how many headers and bytes that is; past maxEntries
// headers or maxBytes bytes it stops with errTooLarge. Memory: one buffer.
func scanZipDir(r io.ReaderAt, size, start int64, maxEntries int, maxBytes int64) (entries int, n int64, err error) {
	br := bufio.NewReaderSize(io.NewSectionReader(r, start, size-start), 64<<10)
	var h [zipDirHeaderLen]byte
	for {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return entries, n, nil
			}
			return entries, n, fmt.Errorf("read the zip's directory: %w", err)
		}
		if binary.LittleEndian.Uint32(h[:]) != zipDirHeaderSig {
			return entries, n, nil
		}
		le := binary.LittleEndian
		vlen := int(le.Uint16(h[28:])) + int(le.Uint16(h[30:])) + int(le.Uint16(h[32:]))
		if _, err := br.Discard(vlen); err != nil {
			if err == io.EOF {
				return entries, n, nil
			}
			return entries, n, fmt.Errorf("read the zip's directory: %w", err)
		}
		entries++
		n += int64(zipDirHeaderLen + vlen)
		if entries > maxEntries {
			return entries, n, fmt.Errorf("%w: the zip's central directory holds more than %d entries", errTooLarge, maxEntries)
		}
		if n > maxBytes {
			return entries, n, fmt.Errorf("%w: the zip's central directory is more than %d bytes (%d entries × %d bytes)", errTooLarge, maxBytes, maxEntries, zipDirBytesPerEntry)
		}
	}
}

// openZip checks the zip's directory against the caps, then parses it.
func (x *extractor) openZip(r io.ReaderAt, size int64) (*zip.Reader, error) {
	end, err := readZipEnd(r, size)
	if err != nil {
		return nil, err
	}
	maxDir := int64(x.lim.maxEntries) * zipDirBytesPerEntry
	if end.entries > uint64(x.lim.maxEntries) {
		return nil, fmt.Errorf("%w: the zip lists %d entries, more than %d", errTooLarge, end.entries, x.lim.maxEntries)
	}
	if end.dirSize > uint64(maxDir) {
		return nil, fmt.Errorf("%w: the zip's central directory is %d bytes, more than %d (%d entries × %d bytes)",
			errTooLarge, end.dirSize, maxDir, x.lim.maxEntries, zipDirBytesPerEntry)
	}
	if len(end.starts) == 0 {
		return nil, errNotZip("the central directory is outside the file")
	}
	var most int64
	for _, start := range end.starts {
		_, n, err := scanZipDir(r, size, start, x.lim.maxEntries, maxDir)
		if err != nil {
			return nil, err
		}
		most = max(most, n)
	}
	// Should archive/zip ever read another directory than the one
	// measured, it still cannot read (and keep) more than this: the
	// measured directory and the end records, comments and a bad last
	// header included (each at most 3 × 64 KiB), well within 1 MiB.
	budget := &budgetReaderAt{r: r, left: most + 1<<20}
	zr, err := zip.NewReader(budget, size)
	budget.left = -1 // entries' data is read through it too
	if errors.Is(err, errTooLarge) {
		return nil, err
	}
	if err != nil {
		return nil, errNotZip(err.Error())
	}
	if len(zr.File) > x.lim.maxEntries {
		return nil, fmt.Errorf("%w: the zip holds %d entries, more than %d", errTooLarge, len(zr.File), x.lim.maxEntries)
	}
	return zr, nil
}

// budgetReaderAt fails reads past a budget of bytes; left < 0 is no budget.
type budgetReaderAt struct {
	r    io.ReaderAt
	left int64
}

func (b *budgetReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if b.left >= 0 {
		if int64(len(p)) > b.left {
			return 0, fmt.Errorf("%w: the zip's central directory is larger than measured", errTooLarge)
		}
		b.left -= int64(len(p))
	}
	return b.r.ReadAt(p, off)
}
