// The disk check of moltd's master (Service::runCheck): the volumes, their
// leftovers and, at start, their key indexes.
//
// A volume belongs to the workers' user, who can put any name in it,
// symbolic links and hard links included. Everything here opens, creates,
// renames and unlinks by path inside the volume, and LMDB opens its lock
// and data files by path, following links, with O_CREAT. Checking each
// name first (lstat, O_NOFOLLOW) and then using the path is a race a
// worker wins, and LMDB cannot be given descriptors instead. So a root
// process does no volume work as root: it forks a child that takes the
// credentials of the user the workers run as (`user`; without it, the
// volume's owner), all of them (supplementary groups, real, effective,
// saved and file-system ids), checks that it cannot get root back, and
// does the work there. A link planted in the volume then reaches only what
// that user could write already, and every file the check creates is that
// user's from its first moment, as the workers need.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "object_store.h"

namespace server {

struct VolumeCredentials {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary
  bool operator==(const VolumeCredentials& o) const {
    return uid == o.uid && gid == o.gid && groups == o.groups;
  }
};

// Who a root process is for its work in `volume`: `user` (with its groups)
// when set, since the workers run as that user, who is the one that can
// plant names in the volume; else the volume's owner, without
// supplementary groups. Throws std::system_error or std::runtime_error.
VolumeCredentials volumeCredentials(const std::string& user, const std::string& volume);

// Runs `body` in a forked child that has taken `credentials` and returns
// what it returned. The child cannot become root again, is not dumpable
// (so the user's other processes cannot trace it or take its inherited
// descriptors) and dies with the caller. Throws std::system_error when
// the child cannot be made, cannot take the credentials, or fails.
std::string runWithCredentials(const VolumeCredentials& credentials, const std::function<std::string()>& body);

// The check's result lines (see MoltdService::applyCheck): the temp files
// of interrupted uploads and names a cut-short rebuild left, removed; at
// `trigger` "start", each key index checked and repaired; then each
// volume's state. Run as root, each volume's part runs with its
// volumeCredentials(`user`, volume).
std::string checkVolumes(const StorageSettings& storage, const std::string& user, const std::string& trigger);

}  // namespace server
