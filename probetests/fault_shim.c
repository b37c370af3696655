/* Fault injection for the probe tests (LD_PRELOAD; never installed).
 *
 * MOLT_FAULT=call:role:nth[:hang|:wait|:ERRNO]  fail (or hang in) the nth
 *                                  use of `call` in a process of `role`
 *                                  after arming; ERRNO (a number) replaces
 *                                  the call's usual error; wait holds the
 *                                  call until the arm file is removed, then
 *                                  lets it run unfailed (a window held open
 *                                  for the test to act in)
 * MOLT_FAULT_ARM=path              armed only while this file exists
 * MOLT_FAULT_FIRED=path            created when the fault fires; O_EXCL makes
 *                                  it fire once across every process
 * MOLT_FAULT_PATH=text             stat counts only calls on a path that
 *                                  contains `text`
 * MOLT_SYSLOG_PATH=path            a connect() to the syslog daemon's socket
 *                                  (/dev/log) goes to this socket instead,
 *                                  with or without MOLT_FAULT
 *
 * Roles: master (an image started fresh), new-image (an image started from
 * a handoff), synchronizer (these three of moltd and of molt-run), validator, prober (volume checks), checker (the
 * new binary's --check-config before its exec), recorder (the writer of the
 * last good record), worker, any. Calls: fork, execve (and
 * execv), pipe2, socket, bind, listen, accept4, close_listener (a close() of
 * a listening socket; with wait, the window in which that copy is the last
 * one), read, write, memfd_create,
 * open (and openat, fopen), rename, renameat (the pid file's), fsync, fsync_dir (an fsync of a directory only),
 * syncfs, statvfs, stat (and stat64), getaddrinfo, setuid, unlink,
 * and the key index's LMDB calls mdb_txn_begin (MDB_READERS_FULL, as stale
 * reader slots of killed workers give), mdb_txn_commit, mdb_cursor_get and
 * mdb_put (EIO unless ERRNO says otherwise), and mdb_meta_write (the pwrite
 * of an LMDB commit's meta page, after which LMDB answers MDB_PANIC).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifdef __cplusplus
extern "C" {
#endif

static char fault_call[32];
static char fault_role[32];
static long fault_nth;
static int fault_hang;
static int fault_wait;
static int fault_errno; /* 0: the call's usual error */
static const char* arm_path;
static const char* fired_path;
static const char* fault_path;
static int from_handoff;
static long uses;
static const char* syslog_path;

__attribute__((constructor)) static void fault_init(void) {
  const char* spec = getenv("MOLT_FAULT");
  arm_path = getenv("MOLT_FAULT_ARM");
  fault_path = getenv("MOLT_FAULT_PATH");
  fired_path = getenv("MOLT_FAULT_FIRED");
  from_handoff = getenv("MOLT_HANDOFF") != NULL;
  syslog_path = getenv("MOLT_SYSLOG_PATH");
  if (spec == NULL || arm_path == NULL || fired_path == NULL) return;
  char mode[16] = "";
  if (sscanf(spec, "%31[^:]:%31[^:]:%ld:%15s", fault_call, fault_role, &fault_nth, mode) < 3)
    fault_call[0] = '\0';
  fault_hang = strcmp(mode, "hang") == 0;
  fault_wait = strcmp(mode, "wait") == 0;
  if (mode[0] >= '0' && mode[0] <= '9') fault_errno = atoi(mode);
}

static const char* my_role(void) {
  char name[17] = "";
  prctl(PR_GET_NAME, name, 0, 0, 0);
  if (strcmp(name, "moltd-master") == 0 || strcmp(name, "molt-run-master") == 0)
    return from_handoff ? "new-image" : "master";
  if (strcmp(name, "moltd-sync") == 0 || strcmp(name, "molt-run-sync") == 0) return "synchronizer";
  if (strcmp(name, "moltd-validate") == 0) return "validator";
  if (strcmp(name, "moltd-probe") == 0) return "prober";
  if (strcmp(name, "moltd-check") == 0) return "checker";
  if (strcmp(name, "moltd-record") == 0) return "recorder";
  if (strncmp(name, "moltd-w", 7) == 0) return "worker";
  return "other";
}

/* Whether this use of `call` is the one to fail. Uses raw system calls
 * only, so that it never re-enters the wrappers below. */
static int should_fail(const char* call) {
  if (fault_call[0] == '\0' || strcmp(call, fault_call) != 0) return 0;
  const char* role = my_role();
  if (strcmp(fault_role, "any") != 0 && strcmp(fault_role, role) != 0) return 0;
  if (syscall(SYS_faccessat, AT_FDCWD, arm_path, F_OK, 0) != 0) return 0;
  if (++uses != fault_nth) return 0;
  int fd = (int)syscall(SYS_openat, AT_FDCWD, fired_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return 0; /* fired already, elsewhere */
  char line[96];
  int n = snprintf(line, sizeof line, "%s %s %d\n", call, role, (int)getpid());
  if (syscall(SYS_write, fd, line, (size_t)n) < 0) { /* the file's existence is what counts */ }
  syscall(SYS_close, fd);
  if (fault_hang)
    for (;;) pause();
  if (fault_wait) {
    const struct timespec tick = {0, 10 * 1000 * 1000};
    while (syscall(SYS_faccessat, AT_FDCWD, arm_path, F_OK, 0) == 0) syscall(SYS_nanosleep, &tick, NULL);
    return 0;
  }
  return 1;
}

#define NEXT(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))
#define FAIL_WITH(err, value) (errno = fault_errno ? fault_errno : (err), (value))

pid_t fork(void) {
  if (should_fail("fork")) return FAIL_WITH(EAGAIN, -1);
  return NEXT(fork)();
}

int execve(const char* path, char* const argv[], char* const envp[]) {
  if (should_fail("execve")) return FAIL_WITH(ENOMEM, -1);
  return NEXT(execve)(path, argv, envp);
}

int execv(const char* path, char* const argv[]) {
  if (should_fail("execve")) return FAIL_WITH(ENOMEM, -1);
  return NEXT(execv)(path, argv);
}

int pipe2(int fds[2], int flags) {
  if (should_fail("pipe2")) return FAIL_WITH(EMFILE, -1);
  return NEXT(pipe2)(fds, flags);
}

int socket(int domain, int type, int protocol) {
  if (should_fail("socket")) return FAIL_WITH(EMFILE, -1);
  return NEXT(socket)(domain, type, protocol);
}

int connect(int fd, const struct sockaddr* addr, socklen_t len) {
  const struct sockaddr_un* unix_addr = (const struct sockaddr_un*)addr;
  if (syslog_path != NULL && addr != NULL && addr->sa_family == AF_UNIX &&
      len > offsetof(struct sockaddr_un, sun_path) && strcmp(unix_addr->sun_path, "/dev/log") == 0) {
    struct sockaddr_un redirected;
    memset(&redirected, 0, sizeof redirected);
    redirected.sun_family = AF_UNIX;
    strncpy(redirected.sun_path, syslog_path, sizeof redirected.sun_path - 1);
    return NEXT(connect)(fd, (const struct sockaddr*)&redirected, sizeof redirected);
  }
  return NEXT(connect)(fd, addr, len);
}

int bind(int fd, const struct sockaddr* addr, socklen_t len) {
  if (should_fail("bind")) return FAIL_WITH(EADDRINUSE, -1);
  return NEXT(bind)(fd, addr, len);
}

int listen(int fd, int backlog) {
  if (should_fail("listen")) return FAIL_WITH(EADDRINUSE, -1);
  return NEXT(listen)(fd, backlog);
}

int accept4(int fd, struct sockaddr* addr, socklen_t* len, int flags) {
  if (should_fail("accept4")) return FAIL_WITH(ECONNABORTED, -1);
  return NEXT(accept4)(fd, addr, len, flags);
}

int close(int fd) {
  if (strcmp(fault_call, "close_listener") == 0) {
    int listening = 0;
    socklen_t len = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening &&
        should_fail("close_listener"))
      return FAIL_WITH(EIO, -1);
  }
  return NEXT(close)(fd);
}

ssize_t read(int fd, void* buf, size_t n) {
  if (should_fail("read")) return FAIL_WITH(EIO, -1);
  return NEXT(read)(fd, buf, n);
}

ssize_t write(int fd, const void* buf, size_t n) {
  if (should_fail("write")) return FAIL_WITH(EIO, -1);
  return NEXT(write)(fd, buf, n);
}

int memfd_create(const char* name, unsigned int flags) {
  if (should_fail("memfd_create")) return FAIL_WITH(EMFILE, -1);
  return NEXT(memfd_create)(name, flags);
}

int open(const char* path, int flags, ...) {
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE)) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  if (should_fail("open")) return FAIL_WITH(EACCES, -1);
  return NEXT(open)(path, flags, mode);
}

int open64(const char* path, int flags, ...) {
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE)) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  if (should_fail("open")) return FAIL_WITH(EACCES, -1);
  return NEXT(open64)(path, flags, mode);
}

int openat(int dir, const char* path, int flags, ...) {
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE)) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  if (should_fail("open")) return FAIL_WITH(EACCES, -1);
  return NEXT(openat)(dir, path, flags, mode);
}

FILE* fopen(const char* path, const char* mode) {
  if (should_fail("open")) return FAIL_WITH(EACCES, (FILE*)0);
  return NEXT(fopen)(path, mode);
}

FILE* fopen64(const char* path, const char* mode) {
  if (should_fail("open")) return FAIL_WITH(EACCES, (FILE*)0);
  return NEXT(fopen64)(path, mode);
}

int rename(const char* from, const char* to) {
  if (should_fail("rename")) return FAIL_WITH(EIO, -1);
  return NEXT(rename)(from, to);
}

int renameat(int from_dir, const char* from, int to_dir, const char* to) {
  if (should_fail("renameat")) return FAIL_WITH(EIO, -1);
  return NEXT(renameat)(from_dir, from, to_dir, to);
}

int fsync(int fd) {
  if (should_fail("fsync")) return FAIL_WITH(EIO, -1);
  struct stat st;
  if (strcmp(fault_call, "fsync_dir") == 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode) &&
      should_fail("fsync_dir"))
    return FAIL_WITH(EIO, -1);
  return NEXT(fsync)(fd);
}

int syncfs(int fd) {
  if (should_fail("syncfs")) return FAIL_WITH(EIO, -1);
  return NEXT(syncfs)(fd);
}

int statvfs(const char* path, struct statvfs* buf) {
  if (should_fail("statvfs")) return FAIL_WITH(EIO, -1);
  return NEXT(statvfs)(path, buf);
}

int statvfs64(const char* path, struct statvfs64* buf) {
  if (should_fail("statvfs")) return FAIL_WITH(EIO, -1);
  return NEXT(statvfs64)(path, buf);
}

static int path_counts(const char* path) {
  return fault_path == NULL || (path != NULL && strstr(path, fault_path) != NULL);
}

int stat(const char* path, struct stat* buf) {
  if (path_counts(path) && should_fail("stat")) return FAIL_WITH(EIO, -1);
  return NEXT(stat)(path, buf);
}

int stat64(const char* path, struct stat64* buf) {
  if (path_counts(path) && should_fail("stat")) return FAIL_WITH(EIO, -1);
  return NEXT(stat64)(path, buf);
}

int getaddrinfo(const char* node, const char* service, const struct addrinfo* hints,
                struct addrinfo** res) {
  if (should_fail("getaddrinfo")) return EAI_AGAIN;
  return NEXT(getaddrinfo)(node, service, hints, res);
}

int setuid(uid_t uid) {
  if (should_fail("setuid")) return FAIL_WITH(EPERM, -1);
  return NEXT(setuid)(uid);
}

int unlink(const char* path) {
  if (should_fail("unlink")) return FAIL_WITH(EACCES, -1);
  return NEXT(unlink)(path);
}

/* LMDB, declared here without its header: the shim builds without it. The
 * calls return their error instead of setting errno. */
#define MDB_READERS_FULL_CODE (-30790)
struct MDB_env;
struct MDB_txn;
struct MDB_cursor;
struct MDB_val;
void mdb_txn_abort(struct MDB_txn* txn);

int mdb_txn_begin(struct MDB_env* env, struct MDB_txn* parent, unsigned int flags, struct MDB_txn** txn) {
  if (should_fail("mdb_txn_begin")) return fault_errno ? fault_errno : MDB_READERS_FULL_CODE;
  return NEXT(mdb_txn_begin)(env, parent, flags, txn);
}

int mdb_txn_commit(struct MDB_txn* txn) {
  if (should_fail("mdb_txn_commit")) {
    NEXT(mdb_txn_abort)(txn); /* a failed commit frees the transaction */
    return fault_errno ? fault_errno : EIO;
  }
  return NEXT(mdb_txn_commit)(txn);
}

int mdb_cursor_get(struct MDB_cursor* cursor, struct MDB_val* key, struct MDB_val* data, int op) {
  if (should_fail("mdb_cursor_get")) return fault_errno ? fault_errno : EIO;
  return NEXT(mdb_cursor_get)(cursor, key, data, op);
}

int mdb_put(struct MDB_txn* txn, unsigned int dbi, struct MDB_val* key, struct MDB_val* data,
            unsigned int flags) {
  if (should_fail("mdb_put")) return fault_errno ? fault_errno : EIO;
  return NEXT(mdb_put)(txn, dbi, key, data, flags);
}

/* LMDB's meta-page write at the end of a commit: a pwrite of less than a
 * page to an index's data.mdb (ENOSPC unless ERRNO says otherwise). LMDB
 * refuses the environment from then on (MDB_PANIC), as after a full disk. */
static int is_index_meta_write(int fd, size_t n) {
  if (strcmp(fault_call, "mdb_meta_write") != 0 || n >= 4096) return 0;
  char link[64], target[512];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t len = readlink(link, target, sizeof target - 1);
  if (len < 0) return 0;
  target[len] = '\0';
  const char suffix[] = "/index/data.mdb";
  size_t want = sizeof suffix - 1;
  return (size_t)len >= want && strcmp(target + len - want, suffix) == 0;
}

ssize_t pwrite(int fd, const void* buf, size_t n, off_t offset) {
  if (is_index_meta_write(fd, n) && should_fail("mdb_meta_write")) return FAIL_WITH(ENOSPC, -1);
  return NEXT(pwrite)(fd, buf, n, offset);
}

ssize_t pwrite64(int fd, const void* buf, size_t n, off64_t offset) {
  if (is_index_meta_write(fd, n) && should_fail("mdb_meta_write")) return FAIL_WITH(ENOSPC, -1);
  return NEXT(pwrite64)(fd, buf, n, offset);
}

#ifdef __cplusplus
}
#endif
