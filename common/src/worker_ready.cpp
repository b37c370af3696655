#include "reload/master.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace reload {

bool signalWorkerReady(const WorkerContext& context) {
  char ready = 'R';
  bool told = write(context.readyFd, &ready, 1) == 1;
  close(context.readyFd);
  // Nice values are per thread, and the acceptor may be starting threads
  // meanwhile (they inherit its value): repeat until a pass changes nothing.
  for (int pass = 0; pass < 10; ++pass) {
    bool changed = false;
    DIR* tasks = opendir("/proc/self/task");
    if (tasks == nullptr) break;
    while (dirent* entry = readdir(tasks)) {
      if (entry->d_name[0] == '.') continue;
      auto tid = static_cast<id_t>(std::atoi(entry->d_name));
      errno = 0;
      int current = getpriority(PRIO_PROCESS, tid);
      if (errno == 0 && current != context.nice) {
        setpriority(PRIO_PROCESS, tid, context.nice);
        changed = true;
      }
    }
    closedir(tasks);
    if (!changed) break;
  }
  return told;
}

}  // namespace reload
