package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"dedupcache/cachestore/snapshot"
	"dedupcache/proxy"
)

// Warm restarts (snapshot.path): the cache is loaded from the snapshot
// before the listeners accept (they are bound; connections wait in the
// backlog), written every snapshot.interval by a goroutine the app owns,
// and written once more at shutdown, after the servers have drained.

// loadSnapshot loads snapshot.path, if set and present. A damaged file
// loads what it can and logs where it broke; it never stops the start.
func (a *app) loadSnapshot() {
	path := a.cfg.Snapshot.Path
	if path == "" {
		return
	}
	start := time.Now()
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		a.logger.Info("snapshot: none yet", "path", path)
		return
	}
	if err != nil {
		a.logger.Error("snapshot: cannot open; starting empty", "path", path, "err", err)
		return
	}
	defer f.Close()
	r, err := snapshot.NewReader(f)
	if err != nil {
		a.logger.Error("snapshot: not loadable; starting empty", "path", path, "err", err)
		return
	}
	st, err := a.proxy.LoadSnapshot(r, time.Now())
	for _, s := range r.Skipped() {
		a.logger.Warn("snapshot: damaged record skipped", "path", path, "offset", s.Offset, "reason", s.Reason)
	}
	attrs := []any{"path", path, "entries", st.Entries, "records", st.Bodies, "bytes", st.Bytes,
		"expired", st.Expired, "not_loaded_full", st.Full, "skipped", st.Skipped,
		"written", r.Created().UTC().Format(time.RFC3339), "seconds", time.Since(start).Seconds()}
	if err != nil {
		a.logger.Error("snapshot: damaged; loaded what came before the damage", append(attrs, "err", err)...)
		return
	}
	a.logger.Info("snapshot loaded", attrs...)
}

// writeSnapshot writes snapshot.path atomically (a crash mid-write leaves
// the previous file).
func (a *app) writeSnapshot() {
	path := a.cfg.Snapshot.Path
	// Temporary files a killed writer left (snapshot.WriteFile's naming).
	if old, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")); len(old) > 0 {
		for _, f := range old {
			_ = os.Remove(f)
		}
	}
	start := time.Now()
	var st proxy.SnapshotStats
	err := snapshot.WriteFile(path, start, func(w *snapshot.Writer) error {
		var err error
		st, err = a.proxy.WriteSnapshot(w)
		return err
	})
	var size int64
	if fi, serr := os.Stat(path); serr == nil {
		size = fi.Size()
	}
	a.proxy.NoteSnapshotWrite(st, size, time.Since(start), err)
	if err != nil {
		a.logger.Error("snapshot: write failed; the previous file stays", "path", path, "err", err)
		return
	}
	a.logger.Info("snapshot written", "path", path, "entries", st.Entries, "records", st.Bodies,
		"bytes", st.Bytes, "file_bytes", size, "seconds", time.Since(start).Seconds())
}

// startSnapshots writes the snapshot every snapshot.interval until
// stopSnapshots.
func (a *app) startSnapshots() {
	every := time.Duration(a.cfg.Snapshot.Interval)
	a.snapStop = make(chan struct{})
	if a.cfg.Snapshot.Path == "" || every <= 0 {
		return
	}
	a.snapshotting.Add(1)
	go func() {
		defer a.snapshotting.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-a.snapStop:
				return
			case <-t.C:
				a.writeSnapshot()
			}
		}
	}()
}

// stopSnapshots stops the periodic writes and waits for one in progress.
func (a *app) stopSnapshots() {
	if a.snapStop != nil {
		close(a.snapStop)
	}
	a.snapshotting.Wait()
}
