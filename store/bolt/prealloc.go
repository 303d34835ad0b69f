package bolt

import (
	"os"
	"time"

	"go.etcd.io/bbolt"
)

// The data file is kept written ahead of what bbolt uses, with zeros.
//
// bbolt grows its file with ftruncate, which leaves the new tail sparse: the first write to
// each block of it makes ext4 (and most file systems) allocate the block, and the next
// fdatasync then has to commit that allocation to the journal as well as the data. A
// store that keeps appending runs pays that on nearly every commit, and a commit is two
// fdatasyncs that every accept waits for. Blocks that were written once are overwritten
// in place, and their fdatasync flushes data only. BenchmarkCommitTail (8 appended and 10
// rewritten pages, then the meta page, two fdatasyncs) on the development VM, ext4 on
// virtio: 0.29 ms a commit into a truncated tail, 0.23 ms into a zero-filled one (0.38–0.45
// against 0.29–0.30 ms in an earlier, busier hour). PostgreSQL fills its WAL segments with
// zeros for the same reason.
//
// The zeros are written by the writer goroutine, at the start of a write transaction and
// only past the end of the file: bbolt writes only below the end of its file (it grows the
// file before it writes past it), and no other write transaction can run meanwhile, so
// the zeros never land on a page bbolt wrote. Their fdatasync runs on its own goroutine, so
// no commit waits for it. bbolt ignores a file longer than its data.
//
// How far ahead grows with the file, so a small one stays small: a quarter of what bbolt
// uses, between 1 and 32 MB. The bench's async accepts append ~30 MB a second.
const (
	preallocMin   = 1 << 20
	preallocMax   = 32 << 20
	preallocStep  = 1 << 20     // written per write transaction, at most
	preallocPause = time.Minute // after a failed write, or with the disk nearly full
	// preallocReserve is the free space below which nothing is written ahead: zeros must
	// not take the last of a disk that other files (the admin token, logs) need too.
	preallocReserve = 256 << 20
)

// preallocAhead is how much to keep written past a high-water mark of used bytes.
func preallocAhead(used int64) int64 { return min(max(used/4, preallocMin), preallocMax) }

// prealloc writes zeros ahead of a bbolt file.
type prealloc struct {
	file    *os.File // a second descriptor of the data file, for writing
	reserve uint64   // free space to leave on the disk (preallocReserve)
	filled  int64    // the file's size after our last write: what we know is written
	// pauseUntil: a write of zeros failed or the disk is nearly full; none is tried before
	// then, so a full disk costs a check a minute, not one per transaction.
	pauseUntil time.Time
	zeros      []byte
	sync       chan struct{} // a pending fdatasync, for the syncer
	done       chan struct{} // closed when the syncer returned
}

// newPrealloc starts preallocating path; nil when the file cannot be opened for writing
// (a read-only file still serves reads, and bbolt reports its own errors).
func newPrealloc(path string, reserve uint64) *prealloc {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil
	}
	p := &prealloc{file: f, reserve: reserve, filled: fi.Size(), sync: make(chan struct{}, 1), done: make(chan struct{})}
	go p.syncer()
	return p
}

// extend writes up to preallocStep of zeros at the end of the file when less than
// preallocAhead is written past tx's high-water mark. tx is the writer's open write
// transaction: while it is open, nothing else writes the file.
func (p *prealloc) extend(tx *bbolt.Tx) {
	if p == nil || (!p.pauseUntil.IsZero() && time.Now().Before(p.pauseUntil)) {
		return
	}
	used := tx.Size()
	ahead := preallocAhead(used)
	if p.filled-used >= ahead {
		return
	}
	fi, err := p.file.Stat()
	if err != nil {
		return
	}
	// bbolt may have grown the file past what we wrote (a transaction larger than the
	// margin): its new tail is its own, so only ever write at the end.
	end := max(p.filled, fi.Size())
	if end-used >= ahead {
		p.filled = end
		return
	}
	if free, ok := freeBytes(p.file.Name()); !ok || free < p.reserve+preallocStep {
		p.pauseUntil = time.Now().Add(preallocPause)
		return
	}
	if p.zeros == nil {
		p.zeros = make([]byte, preallocStep)
	}
	if _, err := p.file.WriteAt(p.zeros, end); err != nil {
		// bbolt reports a full disk on its own writes; the zeros that did land are
		// blocks it may use.
		p.pauseUntil = time.Now().Add(preallocPause)
		return
	}
	p.pauseUntil = time.Time{}
	p.filled = end + preallocStep
	select {
	case p.sync <- struct{}{}:
	default: // one is pending: it covers these zeros too
	}
}

// syncer makes the zeros' blocks durable (allocated, and that journaled) off the writer's
// path.
func (p *prealloc) syncer() {
	defer close(p.done)
	for range p.sync {
		_ = syncData(p.file)
	}
}

// close stops the syncer and closes the descriptor.
func (p *prealloc) close() {
	if p == nil {
		return
	}
	close(p.sync)
	<-p.done
	p.file.Close()
}
