// reload_bench: starts moltd, drives HTTP load from many connections, sends
// reload signals at a fixed interval, and prints what clients saw.
//
// Every failure is counted by kind (refused, reset, timeout, short read,
// non-2xx). Reload latency is the time from a signal to the first response
// served by the generation it started (the X-Molt-Generation header).
// With --expect-zero-failures the exit status says whether any request
// failed, so probe tests can use this as their load engine.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "http_client.h"

using namespace bench;

namespace {

using Clock = std::chrono::steady_clock;

double now() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

struct Options {
  std::string moltd;
  std::string address;        // use a running server instead of starting one
  std::string adminAddress;   // with --address
  std::string signalName = "HUP";
  int reloads = 20;
  double intervalMs = 100;
  int connections = 16;
  std::string mode = "close";  // close | keepalive
  double steadySeconds = 2;
  int workers = 2;
  std::string handoff = "inherit";
  size_t objectSize = 1024;
  double putRatio = 0.1;
  bool expectZero = false;
  long maxFailures = -1;          // -1: no bound (0 with --expect-zero-failures)
  double maxReloadP99Ms = 0;      // 0: no bound on client latency during reloads
  double settleSeconds = 1;
  std::string configHook;  // a script run before each signal, with the config path
  std::string keepDir;
  double timeoutSeconds = 10;
  bool awaitEach = false;  // send the next signal only once the last reload is done
  std::string masterNice;  // master_nice for the server; empty: its default
  // reload_probation for the server. 0 by default: the figures are those of
  // the reload itself (to serving), and with a probation every signal that
  // arrives before it ends waits for its end.
  std::string probation = "0";
};

struct Sample {
  double start;
  double latency;
  bool put;
};

struct Shared {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> failures[kFailKinds] = {};
  std::mutex mutex;
  std::vector<Sample> samples;
  std::map<uint64_t, double> firstSeen;  // generation -> first response time
  std::vector<std::string> failureNotes;
};

void clientLoop(int id, const Options& opt, const Target& target, Shared& shared,
                const std::string& payload) {
  Connection conn(target, opt.timeoutSeconds);
  std::mt19937 rng(static_cast<unsigned>(id * 7919 + 17));
  std::uniform_real_distribution<double> coin(0, 1);
  std::vector<Sample> samples;
  std::map<uint64_t, double> seen;
  uint64_t count = 0;
  while (!shared.stop.load(std::memory_order_relaxed)) {
    bool put = coin(rng) < opt.putRatio;
    std::string key = put ? "bench/put-" + std::to_string(id) + "-" + std::to_string(count % 8)
                          : "bench/object";
    std::string request = std::string(put ? "PUT" : "GET") + " /v1/" + key + " HTTP/1.1\r\nHost: " +
                          target.hostHeader + "\r\n";
    if (opt.mode == "close") request += "Connection: close\r\n";
    if (put) request += "Content-Length: " + std::to_string(payload.size()) + "\r\n\r\n" + payload;
    else request += "\r\n";
    double start = now();
    std::string note;
    int fail = conn.connectIfNeeded(&note);
    if (fail < 0 && (fail = [&] {
          Connection::Response resp;
          int r = conn.exchange(request, resp, note);
          if (r >= 0) return r;
          if (resp.status < 200 || resp.status >= 300) {
            note = "status " + std::to_string(resp.status) + ": " + resp.body.substr(0, 200);
            return static_cast<int>(kNon2xx);
          }
          if (!put && resp.body.size() != payload.size()) {
            note = "body of " + std::to_string(resp.body.size()) + " bytes";
            return static_cast<int>(kShortRead);
          }
          if (resp.generation && !seen.count(resp.generation)) seen[resp.generation] = now();
          if (resp.close || opt.mode == "close") conn.closeFd();
          return -1;
        }()) < 0) {
      samples.push_back({start, now() - start, put});
    } else {
      conn.closeFd();
      shared.failures[fail]++;
      std::lock_guard<std::mutex> lock(shared.mutex);
      if (shared.failureNotes.size() < 20)
        shared.failureNotes.push_back(std::string(kFailNames[fail]) + " (" + (put ? "PUT" : "GET") +
                                      "): " + (note.empty() ? std::strerror(errno) : note));
    }
    ++count;
    shared.requests++;
  }
  std::lock_guard<std::mutex> lock(shared.mutex);
  shared.samples.insert(shared.samples.end(), samples.begin(), samples.end());
  for (auto [gen, t] : seen) {
    auto it = shared.firstSeen.find(gen);
    if (it == shared.firstSeen.end() || t < it->second) shared.firstSeen[gen] = t;
  }
}

// A one-shot request to the admin endpoint; returns the body or "".
std::string adminGet(const std::string& admin, const std::string& path) {
  Target t = parseTarget(admin);
  Connection c(t, 5);
  if (c.connectIfNeeded() >= 0) return "";
  Connection::Response r;
  std::string note;
  if (c.exchange("GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", r, note) >= 0)
    return "";
  return r.status == 200 ? r.body : "";
}

long jsonNumber(const std::string& json, const std::string& key) {
  auto pos = json.find("\"" + key + "\":");
  if (pos == std::string::npos) return -1;
  return std::strtol(json.c_str() + pos + key.size() + 3, nullptr, 10);
}

long rssKb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  return 0;
}

std::string comm(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(in, name);
  return name;
}

std::vector<pid_t> childrenOf(pid_t parent) {
  std::vector<pid_t> out;
  std::ifstream in("/proc/" + std::to_string(parent) + "/task/" + std::to_string(parent) + "/children");
  pid_t p;
  while (in >> p) out.push_back(p);
  return out;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

void usage() {
  std::cerr << "usage: reload_bench --moltd PATH [--signal HUP|USR1|none] [--reloads N]\n"
               "  [--interval-ms MS] [--connections N] [--mode close|keepalive]\n"
               "  [--steady-seconds S] [--workers N] [--handoff inherit|rebind]\n"
               "  [--object-size BYTES] [--put-ratio R] [--config-hook SCRIPT]\n"
               "  [--await-each] [--expect-zero-failures] [--max-failures N]\n"
               "  [--max-reload-p99-ms MS] [--keep-dir DIR] [--master-nice N]\n"
               "  [--settle-seconds S] [--probation S]\n"
               "Client latency is printed for three windows: steady (--steady-seconds\n"
               "before the first signal), during reloads, and after them (the\n"
               "--settle-seconds once the last reload is done), and for GET and PUT\n"
               "apart.\n"
               "Exits 1 when a reload failed or did not produce a new generation, when\n"
               "more requests failed than allowed, or when client p99 latency during\n"
               "reloads passed --max-reload-p99-ms; 64 on a usage error.\n";
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        usage();
        std::exit(64);
      }
      return argv[++i];
    };
    if (a == "--moltd") opt.moltd = next();
    else if (a == "--signal") opt.signalName = next();
    else if (a == "--reloads") opt.reloads = std::stoi(next());
    else if (a == "--interval-ms") opt.intervalMs = std::stod(next());
    else if (a == "--connections") opt.connections = std::stoi(next());
    else if (a == "--mode") opt.mode = next();
    else if (a == "--steady-seconds") opt.steadySeconds = std::stod(next());
    else if (a == "--workers") opt.workers = std::stoi(next());
    else if (a == "--handoff") opt.handoff = next();
    else if (a == "--object-size") opt.objectSize = std::stoul(next());
    else if (a == "--put-ratio") opt.putRatio = std::stod(next());
    else if (a == "--config-hook") opt.configHook = next();
    else if (a == "--keep-dir") opt.keepDir = next();
    else if (a == "--expect-zero-failures") opt.expectZero = true;
    else if (a == "--await-each") opt.awaitEach = true;
    else if (a == "--master-nice") opt.masterNice = next();
    else if (a == "--probation") opt.probation = next();
    else if (a == "--settle-seconds") opt.settleSeconds = std::stod(next());
    else if (a == "--max-failures") opt.maxFailures = std::stol(next());
    else if (a == "--max-reload-p99-ms") opt.maxReloadP99Ms = std::stod(next());
    else {
      usage();
      return 64;
    }
  }
  if (opt.moltd.empty() || (opt.mode != "close" && opt.mode != "keepalive") ||
      (opt.signalName != "USR1" && opt.signalName != "HUP" && opt.signalName != "none")) {
    usage();
    return 64;
  }
  if (opt.expectZero) opt.maxFailures = 0;
  int sig = opt.signalName == "USR1" ? SIGUSR1 : opt.signalName == "HUP" ? SIGHUP : 0;
  signal(SIGPIPE, SIG_IGN);

  char tmpl[] = "/tmp/molt-bench-XXXXXX";
  std::string dir = opt.keepDir.empty() ? mkdtemp(tmpl) : opt.keepDir;
  mkdir((dir + "/data").c_str(), 0755);
  int port = freePort(), adminPort = freePort();
  std::string address = "127.0.0.1:" + std::to_string(port);
  std::string admin = "127.0.0.1:" + std::to_string(adminPort);
  std::string config = dir + "/moltd.conf";
  {
    std::ofstream out(config);
    out << "[server]\nbind = " << address << "\nworkers = " << opt.workers
        << "\ngraceful_timeout = 10\nkeepalive_timeout = 5\nlistener_handoff = " << opt.handoff
        << "\nmax_draining_generations = 16\npid_file = " << dir << "/moltd.pid\n"
        << (opt.masterNice.empty() ? "" : "master_nice = " + opt.masterNice + "\n")
        << "reload_probation = " << opt.probation << "\n"
        << "[admin]\nbind = " << admin << "\n[storage]\nvolumes = " << dir << "/data\n"
        << "[log]\nfile = " << dir << "/moltd.log\naccess_log = off\n";
  }
  pid_t master = fork();
  if (master == 0) {
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    execl(opt.moltd.c_str(), opt.moltd.c_str(), "--config", config.c_str(), nullptr);
    std::perror("exec moltd");
    _exit(127);
  }
  auto fail = [&](const std::string& why) {
    std::cerr << "reload_bench: " << why << " (log in " << dir << "/moltd.log)\n";
    kill(master, SIGKILL);
    waitpid(master, nullptr, 0);
    return 2;
  };
  double deadline = now() + 20;
  std::string status;
  while (now() < deadline) {
    status = adminGet(admin, "/status");
    if (status.find("\"state\":\"running\"") != std::string::npos) break;
    int st;
    if (waitpid(master, &st, WNOHANG) == master) return fail("moltd exited during start-up");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (status.find("\"state\":\"running\"") == std::string::npos) return fail("moltd did not start");

  std::string payload(opt.objectSize, 'x');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>('a' + i % 26);
  Target target = parseTarget(address);
  {
    Connection c(target, 10);
    Connection::Response r;
    std::string note;
    if (c.connectIfNeeded() >= 0 ||
        c.exchange("PUT /v1/bench/object HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                       std::to_string(payload.size()) + "\r\nConnection: close\r\n\r\n" + payload,
                   r, note) >= 0 || r.status != 201)
      return fail("could not store the benchmark object");
  }

  Shared shared;
  std::vector<std::thread> clients;
  double loadStart = now();
  for (int i = 0; i < opt.connections; ++i)
    clients.emplace_back(clientLoop, i, std::cref(opt), std::cref(target), std::ref(shared),
                         std::cref(payload));
  // Memory sampling runs alongside.
  std::atomic<bool> sampling{true};
  long masterPeak = 0, workerPeak = 0, syncPeak = 0, totalPeak = 0;
  std::thread sampler([&] {
    while (sampling) {
      long total = rssKb(master);
      masterPeak = std::max(masterPeak, rssKb(master));
      for (pid_t c : childrenOf(master)) {
        long r = rssKb(c);
        total += r;
        if (comm(c) == "moltd-sync") syncPeak = std::max(syncPeak, r);
        else workerPeak = std::max(workerPeak, r);
      }
      totalPeak = std::max(totalPeak, total);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });

  std::this_thread::sleep_for(std::chrono::duration<double>(opt.steadySeconds));
  double steadyEnd = now();
  uint64_t steadyRequests = shared.requests.load();
  std::vector<double> signalTimes;
  std::vector<long> generationBefore;
  std::string startStatus = adminGet(admin, "/status");
  long lastGeneration = jsonNumber(startStatus, "generation");
  const long firstGeneration = lastGeneration;
  const long failedBefore = jsonNumber(startStatus, "reloads_failed");
  int stalled = 0;  // awaited signals that produced no new generation
  for (int i = 0; i < opt.reloads && sig; ++i) {
    if (!opt.configHook.empty()) {
      std::string cmd = opt.configHook + " " + config + " " + std::to_string(i);
      if (std::system(cmd.c_str()) != 0) return fail("config hook failed");
    }
    double t = now();
    kill(master, sig);
    signalTimes.push_back(t);
    generationBefore.push_back(lastGeneration);
    // Next signal at a fixed interval; meanwhile find out which generation serves.
    double next = t + opt.intervalMs / 1000.0;
    double giveUp = opt.awaitEach ? t + 30 : next;
    long gen = lastGeneration;
    while (now() < giveUp) {
      long g = jsonNumber(adminGet(admin, "/status"), "generation");
      if (g > gen) gen = g;
      if (gen > lastGeneration) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (opt.awaitEach && gen == lastGeneration) ++stalled;
    lastGeneration = gen;
    double left = next - now();
    if (left > 0) std::this_thread::sleep_for(std::chrono::duration<double>(left));
  }
  double reloadEnd = now();
  uint64_t reloadRequests = shared.requests.load() - steadyRequests;
  std::this_thread::sleep_for(std::chrono::duration<double>(opt.settleSeconds));
  shared.stop = true;
  for (auto& t : clients) t.join();
  sampling = false;
  sampler.join();
  std::string finalStatus = adminGet(admin, "/status");

  kill(master, SIGTERM);
  int st = 0;
  waitpid(master, &st, 0);

  // Figures.
  std::vector<double> steadyLat, reloadLat, afterLat;
  std::vector<double> byMethod[3][2];  // [steady, during reloads, after][PUT]
  for (const auto& s : shared.samples) {
    int window = s.start >= loadStart && s.start < steadyEnd ? 0
                 : s.start >= steadyEnd && s.start < reloadEnd ? 1
                 : s.start >= reloadEnd ? 2 : -1;
    if (window == 0) steadyLat.push_back(s.latency * 1000);
    else if (window == 1) reloadLat.push_back(s.latency * 1000);
    else if (window == 2) afterLat.push_back(s.latency * 1000);
    if (window >= 0) byMethod[window][s.put].push_back(s.latency * 1000);
  }
  std::vector<double> reloadLatency;
  for (size_t i = 0; i < signalTimes.size(); ++i) {
    // The generation this signal started is the first above the one serving before it.
    for (const auto& [gen, t] : shared.firstSeen) {
      if (static_cast<long>(gen) > generationBefore[i] && t >= signalTimes[i]) {
        reloadLatency.push_back((t - signalTimes[i]) * 1000);
        break;
      }
    }
  }
  uint64_t failed = 0;
  for (auto& f : shared.failures) failed += f.load();
  std::printf("moltd reload benchmark\n");
  std::printf("signal: %s x %d every %.0f ms, handoff %s\n", opt.signalName.c_str(), opt.reloads,
              opt.intervalMs, opt.handoff.c_str());
  std::printf("load: %d connections, %s, %.0f%% PUT, %zu-byte objects, %d workers\n",
              opt.connections, opt.mode == "close" ? "new connection per request" : "keep-alive",
              opt.putRatio * 100, opt.objectSize, opt.workers);
  std::printf("requests: %llu\n", static_cast<unsigned long long>(shared.requests.load()));
  std::printf("failed: %llu", static_cast<unsigned long long>(failed));
  for (int k = 0; k < kFailKinds; ++k)
    std::printf(" %s=%llu", kFailNames[k], static_cast<unsigned long long>(shared.failures[k].load()));
  std::printf("\n");
  std::printf("throughput steady: %.0f req/s\n", static_cast<double>(steadyRequests) / (steadyEnd - loadStart));
  if (!signalTimes.empty())
    std::printf("throughput during reloads: %.0f req/s\n", static_cast<double>(reloadRequests) / (reloadEnd - steadyEnd));
  std::printf("latency steady ms: p50 %.2f p99 %.2f max %.2f\n", percentile(steadyLat, 0.5),
              percentile(steadyLat, 0.99), percentile(steadyLat, 1.0));
  if (!signalTimes.empty()) {
    std::printf("latency during reloads ms: p50 %.2f p99 %.2f max %.2f\n", percentile(reloadLat, 0.5),
                percentile(reloadLat, 0.99), percentile(reloadLat, 1.0));
    std::printf("latency after reloads ms: p50 %.2f p99 %.2f max %.2f\n", percentile(afterLat, 0.5),
                percentile(afterLat, 0.99), percentile(afterLat, 1.0));
    for (int put = 0; put < 2; ++put)
      std::printf("  %s p99 ms: steady %.2f, during reloads %.2f, after them %.2f (%zu / %zu / %zu)\n",
                  put ? "PUT" : "GET", percentile(byMethod[0][put], 0.99),
                  percentile(byMethod[1][put], 0.99), percentile(byMethod[2][put], 0.99),
                  byMethod[0][put].size(), byMethod[1][put].size(), byMethod[2][put].size());
    std::printf("reload latency ms (signal to new generation serving): p50 %.1f p99 %.1f max %.1f (%zu of %zu measured)\n",
                percentile(reloadLatency, 0.5), percentile(reloadLatency, 0.99),
                percentile(reloadLatency, 1.0), reloadLatency.size(), signalTimes.size());
  }
  std::printf("peak RSS KiB: master %ld, largest worker %ld, synchronizer %ld, all processes %ld\n",
              masterPeak, workerPeak, syncPeak, totalPeak);
  size_t workersAt = finalStatus.find("\"workers\":[");
  size_t workersEnd = finalStatus.find(']', workersAt);
  long finalWorkers = 0;
  for (size_t p = finalStatus.find("\"pid\"", workersAt); workersAt != std::string::npos && p < workersEnd;
       p = finalStatus.find("\"pid\"", p + 1))
    ++finalWorkers;
  std::printf("final workers: %ld\n", finalWorkers);
  std::printf("final generation: %ld, reloads ok: %ld, failed: %ld\n",
              jsonNumber(finalStatus, "generation"), jsonNumber(finalStatus, "reloads"),
              jsonNumber(finalStatus, "reloads_failed"));
  std::printf("moltd exit: %s\n", WIFEXITED(st) ? std::to_string(WEXITSTATUS(st)).c_str() : "signal");
  for (const auto& n : shared.failureNotes) std::printf("  failure: %s\n", n.c_str());

  std::vector<std::string> problems;
  if (opt.maxFailures >= 0 && failed > static_cast<uint64_t>(opt.maxFailures))
    problems.push_back(std::to_string(failed) + " requests failed (at most " +
                       std::to_string(opt.maxFailures) + " allowed)");
  if (sig) {
    long reloadsFailed = jsonNumber(finalStatus, "reloads_failed") - failedBefore;
    if (reloadsFailed != 0)
      problems.push_back(std::to_string(reloadsFailed) + " reloads failed or were refused");
    if (stalled > 0)
      problems.push_back(std::to_string(stalled) + " signals produced no new generation within 30 s");
    if (jsonNumber(finalStatus, "generation") <= firstGeneration)
      problems.push_back("the generation never changed");
    if (opt.maxReloadP99Ms > 0 && percentile(reloadLat, 0.99) > opt.maxReloadP99Ms)
      problems.push_back("client p99 latency during reloads " +
                         std::to_string(percentile(reloadLat, 0.99)) + " ms is over " +
                         std::to_string(opt.maxReloadP99Ms) + " ms");
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) problems.push_back("moltd did not exit with 0");
  for (const auto& p : problems) std::printf("problem: %s\n", p.c_str());
  if (opt.keepDir.empty()) {
    std::string cmd = "rm -rf '" + dir + "'";
    if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", dir.c_str());
  }
  return problems.empty() ? 0 : 1;
}
