/* Checks the order a durable PUT needs, in the process that runs it
 * (LD_PRELOAD; for the probe tests only, never installed): a file is
 * renamed into place only once a sync of its filesystem (syncfs, or an
 * fsync of the file itself) has begun after the file's last write returned,
 * and has ended. A crash test that kills the processes cannot see a missing
 * sync (the kernel keeps what they wrote); this sees it on every rename.
 *
 * MOLT_SYNC_ORDER_LOG=path   one line per rename of a file this process
 *                            wrote: "ok" or "UNSYNCED <from> -> <to>"
 *
 * Writes are known by the file's device and inode; a write to a file of
 * another kind (a socket, a pipe) is not recorded. A rename of a file whose
 * writes are not in the table (never written here, or pushed out of it) is
 * not checked and writes no line.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NEXT(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

enum { kSlots = 1 << 16 };

struct WrittenFile {
  dev_t dev;
  ino_t ino;
  uint64_t lastWrite; /* 0: durable (or never written) */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct WrittenFile written[kSlots];
static uint64_t clock_now;           /* orders every event of the process */
static uint64_t latestSyncBeganAt;   /* of the syncs that succeeded */
static const char* log_path;

__attribute__((constructor)) static void sync_order_init(void) { log_path = getenv("MOLT_SYNC_ORDER_LOG"); }

static struct WrittenFile* slot(dev_t dev, ino_t ino) {
  return &written[(((uint64_t)dev * 0x9E3779B97F4A7C15ull) ^ (uint64_t)ino) % kSlots];
}

static void note(const char* line) {
  if (log_path == NULL) return;
  int fd = (int)syscall(SYS_openat, AT_FDCWD, log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  if (syscall(SYS_write, fd, line, strlen(line)) < 0) { /* the test sees the line missing */ }
  syscall(SYS_close, fd);
}

static void wrote(int fd) {
  struct stat st;
  if (log_path == NULL || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return;
  pthread_mutex_lock(&lock);
  struct WrittenFile* w = slot(st.st_dev, st.st_ino);
  w->dev = st.st_dev;
  w->ino = st.st_ino;
  w->lastWrite = ++clock_now;
  pthread_mutex_unlock(&lock);
}

ssize_t write(int fd, const void* buf, size_t n) {
  ssize_t r = NEXT(write)(fd, buf, n);
  if (r > 0) wrote(fd);
  return r;
}

ssize_t pwrite(int fd, const void* buf, size_t n, off_t offset) {
  ssize_t r = NEXT(pwrite)(fd, buf, n, offset);
  if (r > 0) wrote(fd);
  return r;
}

int syncfs(int fd) {
  pthread_mutex_lock(&lock);
  uint64_t began = ++clock_now;
  pthread_mutex_unlock(&lock);
  int r = NEXT(syncfs)(fd);
  if (r == 0) {
    pthread_mutex_lock(&lock);
    if (began > latestSyncBeganAt) latestSyncBeganAt = began;
    pthread_mutex_unlock(&lock);
  }
  return r;
}

static int synced_file(int fd, int r, uint64_t began) {
  struct stat st;
  if (r != 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return r;
  pthread_mutex_lock(&lock);
  struct WrittenFile* w = slot(st.st_dev, st.st_ino);
  if (w->dev == st.st_dev && w->ino == st.st_ino && w->lastWrite < began) w->lastWrite = 0;
  pthread_mutex_unlock(&lock);
  return r;
}

int fsync(int fd) {
  pthread_mutex_lock(&lock);
  uint64_t began = ++clock_now;
  pthread_mutex_unlock(&lock);
  return synced_file(fd, NEXT(fsync)(fd), began);
}

int fdatasync(int fd) {
  pthread_mutex_lock(&lock);
  uint64_t began = ++clock_now;
  pthread_mutex_unlock(&lock);
  return synced_file(fd, NEXT(fdatasync)(fd), began);
}

int rename(const char* from, const char* to) {
  struct stat st;
  if (log_path != NULL && stat(from, &st) == 0 && S_ISREG(st.st_mode)) {
    int known = 0, durable = 0;
    pthread_mutex_lock(&lock);
    struct WrittenFile* w = slot(st.st_dev, st.st_ino);
    if (w->dev == st.st_dev && w->ino == st.st_ino) {
      known = 1;
      durable = w->lastWrite == 0 || w->lastWrite < latestSyncBeganAt;
    }
    pthread_mutex_unlock(&lock);
    if (known) {
      char line[8192];
      if (durable)
        snprintf(line, sizeof line, "ok\n");
      else
        snprintf(line, sizeof line, "UNSYNCED %s -> %s\n", from, to);
      note(line);
    }
  }
  return NEXT(rename)(from, to);
}

#ifdef __cplusplus
}
#endif
