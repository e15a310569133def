package sqlite

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"unsafe"

	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"
)

// The WAL's writes, gathered (issue 12). SQLite appends a transaction to the WAL frame by frame, and each
// frame in two writes: its 24-byte header, then its page. A delivery's completion writes about ten pages a
// message, so the one writer made about twenty pwrite system calls a message, in a row, on the path every
// write waits for (a third of the writer's CPU time in a 20,000 drain, in a virtual machine where system
// calls are dear). walVFS is SQLite's own default VFS with one change: a WAL file's contiguous writes are
// gathered in a buffer and reach the file in one write, before anything could read them:
//   - when SQLite syncs the WAL, which with synchronous=FULL it does at every commit, right after the
//     transaction's last frame and before it publishes the frames in the wal-index;
//   - at the database file's shared-memory barrier, which SQLite passes between writing the two copies of
//     the wal-index header that publish new frames (for a commit without a sync);
//   - before any other call on the file (read, truncate, size, file control, close), and before a write
//     that does not follow the buffer or would overflow it.
// What is still buffered when the connection releases the WAL's write lock belongs to a transaction that did
// not commit (frames spilled before a rollback) and is dropped, never written over what another connection
// or process may write next. A write that fails fails the call that flushed it, and every later write or
// flush of the file fails too until the write lock is released: the transaction cannot commit frames that
// were lost. Other files (the database, its -shm) go to the default VFS as they are. A process killed
// mid-transaction loses frames that were not yet committed, as before.
//
// A commit's own sync of the WAL may be left to the store's syncer (walApp.deferSync, syncer.go): the frames
// are written out as above, SQLite is told the sync succeeded, and the syncer syncs the descriptor before
// anyone hears of the commit.
//
// It is made for the store's writer: synchronous=FULL, shared-memory wal-index. Without a sync at commit
// (NORMAL, OFF) the barrier writes the frames out in time, but a failure there cannot stop their
// publication; with locking_mode=EXCLUSIVE SQLite keeps the wal-index in heap memory and passes neither
// barrier nor shared-memory locks, so frames would wait for the next call on the WAL. Neither is used.
//
// The writer's connection also records where its wal-index is mapped (walApp.shm), which the checkpointer
// reads (checkpoint.go) instead of opening the -shm file: closing a descriptor of a file drops every POSIX
// lock the process holds on it, SQLite's included.

// walBufferBytes is how much of a WAL file's writes one buffer gathers (about 250 frames of 4 KiB).
const walBufferBytes = 1 << 20

// walMaxWrite is the most the default VFS writes in one call: its unixWrite keeps 17 bits of a size
// (seekAndWriteFd: nBuf &= 0x1ffff), as SQLite itself never writes more than a page at once.
const walMaxWrite = 0x1ffff

// walFile is the head of every file the VFS opens (SQLite allocates szOsFile bytes: this, then the default
// VFS's own file object at real). It lives in SQLite's memory, never in Go's.
type walFile struct {
	methods uintptr // sqlite3_file.pMethods: walMethods
	app     uintptr // the VFS's walApp
	real    uintptr // the default VFS's file object, just after this head
	rm      uintptr // its io methods
	peer    uintptr // a WAL's database file, a database file's open WAL (heads of this VFS), or 0
	buf     uintptr // the WAL's buffer (libc memory), allocated at its first write; 0 for other files
	off     int64   // the file offset of buf's first byte
	n       int32   // bytes in buf
	wal     int32   // 1 for a WAL file
	failed  int32   // 1 after a failed flush, until the write lock is released
	ownsFD  int32   // 1 for the WAL whose descriptor walApp.fd holds (the syncer may sync it)
}

const walFileHead = int32(unsafe.Sizeof(walFile{}))

// walVFS is one registration of the VFS (one per Store: SQLite's registry is process-wide, the Store's
// name for it is its own), with the method tables it points at, all in libc memory.
type walVFS struct {
	name    string
	cname   uintptr // the name, NUL-terminated
	vfs     uintptr // sqlite3_vfs
	methods uintptr // sqlite3_io_methods
	app     uintptr // walApp, the VFS's pAppData
}

// walApp is what walOpen finds through the VFS's pAppData: the default VFS it opens files with (whose own
// pAppData its xOpen reads, so it is always called with itself) and the io methods it gives them.
type walApp struct {
	def, methods uintptr
	// shm is the address of the writer's wal-index (region 0 of its -shm mapping), 0 while unmapped; set
	// and read atomically.
	shm uintptr
	// writes counts SQLite's writes to WAL files, calls the writes made of them on the default VFS, dropped
	// the bytes dropped at the release of the write lock (tests).
	writes, calls, dropped int64
	// direct, when 1, passes every write straight on, as the default VFS alone would (tests).
	direct int32
	// bufBytes is the buffer's size (walBufferBytes; tests make it smaller).
	bufBytes int32
	// deferSync, when 1, leaves a commit's sync of the WAL to the store's syncer (syncer.go): walSync
	// writes the frames out, records the WAL as unsynced and answers at once. Set once the store's
	// syncer runs (atomic).
	deferSync int32
	// unsynced is 1 once a commit's sync was left to the syncer, until the writer hands that commit over
	// (atomic).
	unsynced int32
	// fd is the descriptor of the open WAL the syncer syncs (its walFile has ownsFD), -1 when none (atomic).
	// guard is a spin lock (0 free, 1 held, atomic) that the syncer and walClose hold while they sync or
	// give up fd: never two syncs of it at once (Linux reports a failed write-back to one of them only), and
	// never a sync of a descriptor closed meanwhile.
	fd, guard int32
	// lost is 1 once a sync of the writer's WAL failed, the syncer's or walClose's: what the WAL holds on
	// disk is unknown. Every later sync of a WAL through this VFS then fails (SQLITE_IOERR_FSYNC), so that no
	// checkpoint of the writer's copies frames into the database file and no close deletes the WAL: the next
	// open recovers what the disk holds (atomic).
	lost int32
	// unixFiles: the default VFS is SQLite's "unix", whose file objects begin as unixFileHead (read at
	// registration): only then is a WAL's descriptor known, and syncs deferred.
	unixFiles int32
	// deferred counts the commit syncs left to the syncer, syncs the WAL syncs passed on (tests).
	deferred, syncs int64
}

// lockGuard takes walApp.guard, yielding while the other holder (the syncer or walClose) syncs.
func lockGuard(app *walApp) {
	for !atomic.CompareAndSwapInt32(&app.guard, 0, 1) {
		runtime.Gosched()
	}
}

// unlockGuard releases walApp.guard.
func unlockGuard(app *walApp) { atomic.StoreInt32(&app.guard, 0) }

// unixFileHead is how SQLite's unix VFS begins its file object (struct unixFile in os_unix.c): the io
// methods, the VFS, the inode information, then the file descriptor.
type unixFileHead struct {
	_ [3]uintptr // pMethod, pVfs, pInode
	h int32
}

// ptr turns a uintptr that holds an address of SQLite's memory (libc-allocated, outside Go's heap) into a
// pointer, without the conversion go vet rightly distrusts in general.
func ptr[T any](p uintptr) *T { return (*T)(*(*unsafe.Pointer)(unsafe.Pointer(&p))) }

// fn is the value SQLite stores for a Go function it is to call (what modernc's generated code uses).
func fn(f any) uintptr { return (*[2]uintptr)(unsafe.Pointer(&f))[1] }

// registerWALVFS registers a copy of SQLite's default VFS under a name of its own, with walOpen as its xOpen.
func registerWALVFS() (*walVFS, error) {
	tls := libc.NewTLS()
	defer tls.Close()
	def := lib.Xsqlite3_vfs_find(tls, 0)
	if def == 0 {
		return nil, fmt.Errorf("sqlite: no default VFS")
	}
	v := &walVFS{}
	v.name = fmt.Sprintf("socialrx-wal-%p", v)
	var err error
	if v.cname, err = libc.CString(v.name); err != nil {
		return nil, fmt.Errorf("sqlite: VFS name: %w", err)
	}
	v.vfs = libc.Xcalloc(tls, 1, lib.Tsize_t(unsafe.Sizeof(lib.Tsqlite3_vfs{})))
	v.methods = libc.Xcalloc(tls, 1, lib.Tsize_t(unsafe.Sizeof(lib.Tsqlite3_io_methods{})))
	v.app = libc.Xcalloc(tls, 1, lib.Tsize_t(unsafe.Sizeof(walApp{})))
	if v.vfs == 0 || v.methods == 0 || v.app == 0 {
		v.free(tls)
		return nil, fmt.Errorf("sqlite: VFS: out of memory")
	}
	vfs := ptr[lib.Tsqlite3_vfs](v.vfs)
	copyVFS(vfs, ptr[lib.Tsqlite3_vfs](def))
	vfs.FszOsFile += walFileHead
	vfs.FzName = v.cname
	vfs.FpAppData = v.app
	vfs.FxOpen = fn(walOpen)
	app := walApp{def: def, methods: v.methods, bufBytes: walBufferBytes, fd: -1}
	if d := ptr[lib.Tsqlite3_vfs](def); libc.GoString(d.FzName) == "unix" && unixFileLayout(d.FszOsFile) {
		app.unixFiles = 1
	}
	*ptr[walApp](v.app) = app
	*ptr[lib.Tsqlite3_io_methods](v.methods) = lib.Tsqlite3_io_methods{
		FiVersion: 3, FxClose: fn(walClose), FxRead: fn(walRead), FxWrite: fn(walWrite),
		FxTruncate: fn(walTruncate), FxSync: fn(walSync), FxFileSize: fn(walFileSize), FxLock: fn(walLock),
		FxUnlock: fn(walUnlock), FxCheckReservedLock: fn(walCheckReservedLock), FxFileControl: fn(walFileControl),
		FxSectorSize: fn(walSectorSize), FxDeviceCharacteristics: fn(walDeviceCharacteristics),
		FxShmMap: fn(walShmMap), FxShmLock: fn(walShmLock), FxShmBarrier: fn(walShmBarrier),
		FxShmUnmap: fn(walShmUnmap), FxFetch: fn(walFetch), FxUnfetch: fn(walUnfetch),
	}
	if rc := lib.Xsqlite3_vfs_register(tls, v.vfs, 0); rc != lib.SQLITE_OK {
		v.free(tls)
		return nil, fmt.Errorf("sqlite: register VFS: code %d", rc)
	}
	return v, nil
}

// copyVFS copies every field of src into dst but pNext (left zero), without reading it: SQLite writes the
// default VFS's pNext, under its own mutex, whenever a VFS is registered, as another store's Open may be doing
// at this moment (the race detector caught the two in parallel tests).
func copyVFS(dst, src *lib.Tsqlite3_vfs) {
	next, size := unsafe.Offsetof(src.FpNext), unsafe.Sizeof(src.FpNext)
	from := unsafe.Slice((*byte)(unsafe.Pointer(src)), unsafe.Sizeof(*src))
	to := unsafe.Slice((*byte)(unsafe.Pointer(dst)), unsafe.Sizeof(*dst))
	copy(to[:next], from[:next])
	copy(to[next+size:], from[next+size:])
}

// unregister removes the VFS; every connection opened through it must be closed.
func (v *walVFS) unregister() error {
	tls := libc.NewTLS()
	defer tls.Close()
	rc := lib.Xsqlite3_vfs_unregister(tls, v.vfs)
	v.free(tls)
	if rc != lib.SQLITE_OK {
		return fmt.Errorf("sqlite: unregister VFS: code %d", rc)
	}
	return nil
}

func (v *walVFS) free(tls *libc.TLS) {
	libc.Xfree(tls, v.vfs)
	libc.Xfree(tls, v.methods)
	libc.Xfree(tls, v.cname)
	libc.Xfree(tls, v.app)
	v.vfs, v.methods, v.cname, v.app = 0, 0, 0, 0
}

// Calls into the default VFS, one per C signature (the way modernc's generated code calls a function
// pointer).
func callP(tls *libc.TLS, f, p uintptr) int32 {
	return (*(*func(*libc.TLS, uintptr) int32)(unsafe.Pointer(&struct{ uintptr }{f})))(tls, p)
}

func callPI(tls *libc.TLS, f, p uintptr, a int32) int32 {
	return (*(*func(*libc.TLS, uintptr, int32) int32)(unsafe.Pointer(&struct{ uintptr }{f})))(tls, p, a)
}

func callPP(tls *libc.TLS, f, p, a uintptr) int32 {
	return (*(*func(*libc.TLS, uintptr, uintptr) int32)(unsafe.Pointer(&struct{ uintptr }{f})))(tls, p, a)
}

func callPL(tls *libc.TLS, f, p uintptr, a int64) int32 {
	return (*(*func(*libc.TLS, uintptr, int64) int32)(unsafe.Pointer(&struct{ uintptr }{f})))(tls, p, a)
}

func callIO(tls *libc.TLS, f, p, buf uintptr, n int32, off int64) int32 {
	return (*(*func(*libc.TLS, uintptr, uintptr, int32, int64) int32)(unsafe.Pointer(&struct{ uintptr }{f})))(tls, p, buf, n, off)
}

func methods(f *walFile) *lib.Tsqlite3_io_methods { return ptr[lib.Tsqlite3_io_methods](f.rm) }

// walOpen opens zName with the default VFS, in the object after the head, and makes the head the file SQLite
// sees.
func walOpen(tls *libc.TLS, pVfs, zName, pFile uintptr, flags int32, pOutFlags uintptr) int32 {
	appData := ptr[lib.Tsqlite3_vfs](pVfs).FpAppData
	app := ptr[walApp](appData)
	f := ptr[walFile](pFile)
	*f = walFile{app: appData, real: pFile + uintptr(walFileHead)}
	if flags&lib.SQLITE_OPEN_WAL != 0 {
		f.wal = 1
	}
	open := ptr[lib.Tsqlite3_vfs](app.def).FxOpen
	rc := (*(*func(*libc.TLS, uintptr, uintptr, uintptr, int32, uintptr) int32)(unsafe.Pointer(&struct{ uintptr }{open})))(tls, app.def, zName, f.real, flags, pOutFlags)
	f.rm = ptr[lib.Tsqlite3_file](f.real).FpMethods
	if f.rm == 0 {
		return rc // SQLite calls no method of a file whose pMethods is NULL
	}
	f.methods = app.methods
	if rc == lib.SQLITE_OK && f.wal == 1 {
		if app.unixFiles == 1 && atomic.CompareAndSwapInt32(&app.fd, -1, ptr[unixFileHead](f.real).h) {
			f.ownsFD = 1 // the first WAL open through this VFS (the writer's only connection has one)
		}
		// The pager opened its database file through this VFS too: link the two, for the database file's
		// shared-memory calls (walShmLock, walShmBarrier).
		if db := lib.Xsqlite3_database_file_object(tls, zName); db != 0 && ptr[walFile](db).methods == app.methods {
			f.peer = db
			ptr[walFile](db).peer = pFile
		}
	}
	return rc
}

// flush writes what f's buffer holds and empties it. The default VFS writes at most walMaxWrite bytes a call
// (it masks larger sizes), so a full buffer takes a few calls. A failed write drops the buffer and fails
// every later flush and write until the write lock is released (walShmLock): SQLite may have moved on from
// frames it believes written (pages spilled, then read back), so the transaction must not commit.
func flush(tls *libc.TLS, f *walFile) int32 {
	if f.failed == 1 {
		return lib.SQLITE_IOERR_WRITE
	}
	n, off := f.n, f.off
	f.n = 0
	for done := int32(0); done < n; {
		k := min(n-done, walMaxWrite)
		ptr[walApp](f.app).calls++
		if rc := callIO(tls, methods(f).FxWrite, f.real, f.buf+uintptr(done), k, off+int64(done)); rc != lib.SQLITE_OK {
			f.failed = 1
			return rc
		}
		done += k
	}
	return lib.SQLITE_OK
}

// flushed is pFile's head, its buffer written first (see flush).
func flushed(tls *libc.TLS, pFile uintptr) (*walFile, int32) {
	f := ptr[walFile](pFile)
	return f, flush(tls, f)
}

func walWrite(tls *libc.TLS, pFile, zBuf uintptr, iAmt int32, iOfst int64) int32 {
	f := ptr[walFile](pFile)
	if f.wal == 0 {
		return callIO(tls, methods(f).FxWrite, f.real, zBuf, iAmt, iOfst)
	}
	if f.failed == 1 {
		return lib.SQLITE_IOERR_WRITE
	}
	app := ptr[walApp](f.app)
	app.writes++
	size := int64(app.bufBytes)
	if f.n > 0 && (iOfst != f.off+int64(f.n) || int64(f.n)+int64(iAmt) > size) {
		if rc := flush(tls, f); rc != lib.SQLITE_OK {
			return rc
		}
	}
	if f.buf == 0 && app.direct == 0 {
		f.buf = libc.Xmalloc(tls, lib.Tsize_t(size))
	}
	if f.buf == 0 || int64(iAmt) > size || app.direct == 1 {
		app.calls++
		return callIO(tls, methods(f).FxWrite, f.real, zBuf, iAmt, iOfst)
	}
	if f.n == 0 {
		f.off = iOfst
	}
	copy(unsafe.Slice(ptr[byte](f.buf+uintptr(f.n)), iAmt), unsafe.Slice(ptr[byte](zBuf), iAmt))
	f.n += iAmt
	return lib.SQLITE_OK
}

// walClose writes the buffer out and closes the file. The WAL whose descriptor the syncer syncs is synced
// here first, while syncs are deferred, and taken from the syncer (walApp.fd), both under walApp.guard: every
// frame written through it is then on disk, or walApp.lost says that some may not be.
func walClose(tls *libc.TLS, pFile uintptr) int32 {
	f := ptr[walFile](pFile)
	if f.peer != 0 {
		ptr[walFile](f.peer).peer = 0
		f.peer = 0
	}
	rc := flush(tls, f)
	if f.ownsFD == 1 {
		app := ptr[walApp](f.app)
		lockGuard(app)
		if atomic.LoadInt32(&app.deferSync) == 1 {
			switch {
			case atomic.LoadInt32(&app.lost) == 1:
				rc = lib.SQLITE_IOERR_FSYNC
			case rc == lib.SQLITE_OK:
				rc = callPI(tls, methods(f).FxSync, f.real, lib.SQLITE_SYNC_FULL)
			}
			if rc != lib.SQLITE_OK {
				atomic.StoreInt32(&app.lost, 1)
			}
		}
		atomic.StoreInt32(&app.fd, -1)
		unlockGuard(app)
		f.ownsFD = 0
	}
	if f.buf != 0 {
		libc.Xfree(tls, f.buf)
		f.buf = 0
	}
	if crc := callP(tls, methods(f).FxClose, f.real); rc == lib.SQLITE_OK {
		rc = crc
	}
	return rc
}

// walRead writes the buffer out first (the page may be in it). After a failed flush nothing is buffered, and
// reads pass (a rollback reads committed frames back); writes and syncs still fail.
func walRead(tls *libc.TLS, pFile, zBuf uintptr, iAmt int32, iOfst int64) int32 {
	f := ptr[walFile](pFile)
	if f.failed == 0 {
		if rc := flush(tls, f); rc != lib.SQLITE_OK {
			return rc
		}
	}
	return callIO(tls, methods(f).FxRead, f.real, zBuf, iAmt, iOfst)
}

func walTruncate(tls *libc.TLS, pFile uintptr, size int64) int32 {
	f, rc := flushed(tls, pFile)
	if rc != lib.SQLITE_OK {
		return rc
	}
	return callPL(tls, methods(f).FxTruncate, f.real, size)
}

// walSync writes the buffer out, then syncs, or leaves a commit's sync to the syncer (see syncer.go): SQLite
// syncs a WAL at commit with the connection's commit flags (SQLITE_SYNC_NORMAL for the writer, whose
// synchronous is FULL without fullfsync) and everything else (the header of a restarted WAL, a checkpoint's
// sync before it copies frames into the database file) with its checkpoint flags, SQLITE_SYNC_FULL under
// checkpoint_fullfsync. Only the former is deferred: a checkpoint never copies frames that are not on disk.
func walSync(tls *libc.TLS, pFile uintptr, flags int32) int32 {
	f, rc := flushed(tls, pFile)
	if rc != lib.SQLITE_OK {
		return rc
	}
	if f.wal == 1 {
		app := ptr[walApp](f.app)
		if atomic.LoadInt32(&app.lost) == 1 {
			return lib.SQLITE_IOERR_FSYNC
		}
		if f.ownsFD == 1 && flags&0x0f == lib.SQLITE_SYNC_NORMAL && atomic.LoadInt32(&app.deferSync) == 1 {
			app.deferred++
			atomic.StoreInt32(&app.unsynced, 1)
			return lib.SQLITE_OK
		}
		app.syncs++
	}
	return callPI(tls, methods(f).FxSync, f.real, flags)
}

func walFileSize(tls *libc.TLS, pFile, pSize uintptr) int32 {
	f, rc := flushed(tls, pFile)
	if rc != lib.SQLITE_OK {
		return rc
	}
	return callPP(tls, methods(f).FxFileSize, f.real, pSize)
}

func walLock(tls *libc.TLS, pFile uintptr, lock int32) int32 {
	f := ptr[walFile](pFile)
	return callPI(tls, methods(f).FxLock, f.real, lock)
}

func walUnlock(tls *libc.TLS, pFile uintptr, lock int32) int32 {
	f := ptr[walFile](pFile)
	return callPI(tls, methods(f).FxUnlock, f.real, lock)
}

func walCheckReservedLock(tls *libc.TLS, pFile, pResOut uintptr) int32 {
	f := ptr[walFile](pFile)
	return callPP(tls, methods(f).FxCheckReservedLock, f.real, pResOut)
}

func walFileControl(tls *libc.TLS, pFile uintptr, op int32, pArg uintptr) int32 {
	f, rc := flushed(tls, pFile)
	if rc != lib.SQLITE_OK {
		return rc
	}
	return (*(*func(*libc.TLS, uintptr, int32, uintptr) int32)(unsafe.Pointer(&struct{ uintptr }{methods(f).FxFileControl})))(tls, f.real, op, pArg)
}

func walSectorSize(tls *libc.TLS, pFile uintptr) int32 {
	f := ptr[walFile](pFile)
	return callP(tls, methods(f).FxSectorSize, f.real)
}

func walDeviceCharacteristics(tls *libc.TLS, pFile uintptr) int32 {
	f := ptr[walFile](pFile)
	return callP(tls, methods(f).FxDeviceCharacteristics, f.real)
}

// The shared-memory calls are made on the database file, never on a WAL: passed through. A default VFS
// whose files lack them (io methods before version 2) never gets them called: SQLite then uses no WAL.

func walShmMap(tls *libc.TLS, pFile uintptr, iPg, pgsz, bExtend int32, pp uintptr) int32 {
	f := ptr[walFile](pFile)
	if methods(f).FiVersion < 2 {
		return lib.SQLITE_IOERR
	}
	rc := (*(*func(*libc.TLS, uintptr, int32, int32, int32, uintptr) int32)(unsafe.Pointer(&struct{ uintptr }{methods(f).FxShmMap})))(tls, f.real, iPg, pgsz, bExtend, pp)
	if rc == lib.SQLITE_OK && iPg == 0 {
		atomic.StoreUintptr(&ptr[walApp](f.app).shm, *ptr[uintptr](pp))
	}
	return rc
}

// walShmLock drops what the WAL still buffers when the write lock (slot 0) is released: only a transaction
// that did not commit can have left it (see above), and another connection may write there next.
func walShmLock(tls *libc.TLS, pFile uintptr, offset, n, flags int32) int32 {
	f := ptr[walFile](pFile)
	if methods(f).FiVersion < 2 {
		return lib.SQLITE_IOERR
	}
	if f.peer != 0 && offset == 0 && flags == lib.SQLITE_SHM_UNLOCK|lib.SQLITE_SHM_EXCLUSIVE {
		w := ptr[walFile](f.peer)
		ptr[walApp](f.app).dropped += int64(w.n)
		w.n, w.failed = 0, 0
	}
	return (*(*func(*libc.TLS, uintptr, int32, int32, int32) int32)(unsafe.Pointer(&struct{ uintptr }{methods(f).FxShmLock})))(tls, f.real, offset, n, flags)
}

// walShmBarrier writes what the WAL buffers before new frames can be published (see above). With
// synchronous=FULL the sync before it has already done so, and reported any failure; a failure here cannot
// be reported.
func walShmBarrier(tls *libc.TLS, pFile uintptr) {
	f := ptr[walFile](pFile)
	if f.peer != 0 {
		flush(tls, ptr[walFile](f.peer))
	}
	if methods(f).FiVersion < 2 {
		return
	}
	(*(*func(*libc.TLS, uintptr))(unsafe.Pointer(&struct{ uintptr }{methods(f).FxShmBarrier})))(tls, f.real)
}

func walShmUnmap(tls *libc.TLS, pFile uintptr, deleteFlag int32) int32 {
	f := ptr[walFile](pFile)
	if methods(f).FiVersion < 2 {
		return lib.SQLITE_OK
	}
	atomic.StoreUintptr(&ptr[walApp](f.app).shm, 0)
	return callPI(tls, methods(f).FxShmUnmap, f.real, deleteFlag)
}

// Memory-mapped reads (version 3) are of the database file only.

func walFetch(tls *libc.TLS, pFile uintptr, iOfst int64, iAmt int32, pp uintptr) int32 {
	f := ptr[walFile](pFile)
	if methods(f).FiVersion < 3 {
		*ptr[uintptr](pp) = 0
		return lib.SQLITE_OK
	}
	return (*(*func(*libc.TLS, uintptr, int64, int32, uintptr) int32)(unsafe.Pointer(&struct{ uintptr }{methods(f).FxFetch})))(tls, f.real, iOfst, iAmt, pp)
}

func walUnfetch(tls *libc.TLS, pFile uintptr, iOfst int64, p uintptr) int32 {
	f := ptr[walFile](pFile)
	if methods(f).FiVersion < 3 {
		return lib.SQLITE_OK
	}
	return (*(*func(*libc.TLS, uintptr, int64, uintptr) int32)(unsafe.Pointer(&struct{ uintptr }{methods(f).FxUnfetch})))(tls, f.real, iOfst, p)
}
