// The writer pool: small files are buffered and written by workers while
// the applier goes on with the next entries.

package unpack

import (
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// job is one small file whose content and attributes a worker writes.
type job struct {
	a    *applier
	fd   int
	buf  *[]byte
	data []byte
	m    meta
}

// writerPool writes small files in parallel with the tar parser: the names
// are created in tar order by the parser (so every namespace change keeps
// its order), only content and attributes of the already-open inode move to
// a worker, which cannot be redirected by later entries.
type writerPool struct {
	jobs chan job
	wg   sync.WaitGroup // outstanding jobs
	quit sync.WaitGroup // workers
	mu   sync.Mutex
	err  error
}

func newWriterPool(n int) *writerPool {
	p := &writerPool{jobs: make(chan job, 64)} // at most 64 MiB of file content in flight
	for i := 0; i < n; i++ {
		p.quit.Add(1)
		go func() {
			defer p.quit.Done()
			for j := range p.jobs {
				p.setErr(j.run())
				p.wg.Done()
			}
		}()
	}
	return p
}

func (j job) run() error {
	defer unix.Close(j.fd)
	defer chunkPool.Put(j.buf)
	for b := j.data; len(b) > 0; {
		n, err := unix.Write(j.fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &os.SyscallError{Syscall: "write", Err: err}
		}
		b = b[n:]
	}
	return j.a.setMeta(j.fd, j.m, j.m.mode, true)
}

func (p *writerPool) setErr(err error) {
	if err == nil {
		return
	}
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
}

func (p *writerPool) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *writerPool) submit(j job) {
	p.wg.Add(1)
	p.jobs <- j
}

func (p *writerPool) wait() error {
	p.wg.Wait()
	return p.failed()
}

func (p *writerPool) stop() {
	p.wg.Wait()
	close(p.jobs)
	p.quit.Wait()
}
