// object_bench: moltd and nginx side by side on this machine, serving the
// same objects. Prints requests/s for 4 KiB GET and PUT (keep-alive, many
// connections) and MB/s for one large GET, each with its ratio to nginx.
//
// nginx is started from a private configuration (WebDAV PUT, sendfile on,
// access log off) with the same number of worker processes as moltd.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "http_client.h"

using namespace bench;

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Server {
  std::string name;
  std::string address;
  std::string prefix;  // URL path prefix of the objects
  pid_t pid = 0;
};

bool waitListening(const std::string& address, double seconds) {
  double deadline = now() + seconds;
  Target t = parseTarget(address);
  while (now() < deadline) {
    Connection c(t, 2);
    if (c.connectIfNeeded() < 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// Runs `connections` keep-alive clients for `seconds`; returns requests/s
// and counts failures.
double drive(const Server& s, int connections, double seconds, bool put, int objects,
             const std::string& payload, uint64_t& failures) {
  std::atomic<uint64_t> done{0}, failed{0};
  std::atomic<bool> stop{false};
  Target target = parseTarget(s.address);
  std::vector<std::thread> threads;
  for (int c = 0; c < connections; ++c) {
    threads.emplace_back([&, c] {
      Connection conn(target, 10);
      unsigned n = static_cast<unsigned>(c) * 7919u;
      while (!stop.load(std::memory_order_relaxed)) {
        std::string path = s.prefix + "o" + std::to_string(n++ % static_cast<unsigned>(objects));
        std::string req = std::string(put ? "PUT " : "GET ") + path + " HTTP/1.1\r\nHost: x\r\n";
        req += put ? "Content-Length: " + std::to_string(payload.size()) + "\r\n\r\n" + payload : "\r\n";
        std::string note;
        Connection::Response r;
        r.keepBody = false;
        if (conn.connectIfNeeded(&note) >= 0 || conn.exchange(req, r, note) >= 0 ||
            r.status < 200 || r.status >= 300) {
          failed++;
          conn.closeFd();
          continue;
        }
        if (r.close) conn.closeFd();
        done++;
      }
    });
  }
  double start = now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  failures += failed;
  return static_cast<double>(done.load()) / (now() - start);
}

double bigGet(const Server& s, const std::string& path, uint64_t size, uint64_t& failures) {
  Connection conn(parseTarget(s.address), 30);
  Connection::Response r;
  r.keepBody = false;
  std::string note;
  double start = now();
  if (conn.connectIfNeeded(&note) >= 0 ||
      conn.exchange("GET " + s.prefix + path + " HTTP/1.1\r\nHost: x\r\n\r\n", r, note) >= 0 ||
      r.status != 200 || r.bodyBytes != size) {
    failures++;
    std::fprintf(stderr, "%s: large GET failed: %s (status %d, %llu bytes)\n", s.name.c_str(),
                 note.c_str(), r.status, static_cast<unsigned long long>(r.bodyBytes));
    return 0;
  }
  return static_cast<double>(size) / (now() - start) / 1e6;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::string moltd, nginx = "/usr/sbin/nginx";
  int connections = 32, rounds = 3, objects = 1000;
  double seconds = 4;
  uint64_t bigMiB = 256;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--moltd") moltd = v;
    else if (a == "--nginx") nginx = v;
    else if (a == "--connections") connections = std::stoi(v);
    else if (a == "--seconds") seconds = std::stod(v);
    else if (a == "--rounds") rounds = std::stoi(v);
    else if (a == "--big-mib") bigMiB = std::stoull(v);
  }
  if (moltd.empty()) {
    std::cerr << "usage: object_bench --moltd PATH [--nginx PATH] [--connections N] [--seconds S]\n"
                 "  [--rounds N] [--big-mib N]\n";
    return 64;
  }
  signal(SIGPIPE, SIG_IGN);
  char tmpl[] = "/tmp/molt-objbench-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  // nginx's workers drop to www-data when started as root: let them in.
  chmod(dir.c_str(), 0755);
  for (const char* sub : {"/data", "/www", "/www/bench", "/nginx-tmp"}) {
    mkdir((dir + sub).c_str(), 0755);
    chmod((dir + sub).c_str(), 0777);
  }

  Server m{"moltd", "127.0.0.1:" + std::to_string(freePort()), "/v1/bench/", 0};
  Server n{"nginx", "127.0.0.1:" + std::to_string(freePort()), "/bench/", 0};
  {
    std::ofstream c(dir + "/moltd.conf");
    c << "[server]\nbind = " << m.address << "\nworkers = 2\n[admin]\nbind = 127.0.0.1:"
      << freePort() << "\n[storage]\nvolumes = " << dir << "/data\nmax_object_size = 1G\n"
      << "[log]\nfile = " << dir << "/moltd.log\naccess_log = off\n";
  }
  {
    std::ofstream c(dir + "/nginx.conf");
    c << "worker_processes 2;\npid " << dir << "/nginx.pid;\nerror_log " << dir
      << "/nginx-error.log;\ndaemon off;\nevents { worker_connections 1024; }\nhttp {\n"
      << "  access_log off;\n  sendfile on;\n  keepalive_requests 100000;\n"
      << "  client_body_temp_path " << dir << "/nginx-tmp;\n  client_max_body_size 1g;\n"
      << "  server {\n    listen " << n.address << ";\n    root " << dir
      << "/www;\n    location /bench/ { dav_methods PUT; create_full_put_path on; }\n  }\n}\n";
  }
  m.pid = fork();
  if (m.pid == 0) {
    execl(moltd.c_str(), moltd.c_str(), "--config", (dir + "/moltd.conf").c_str(), nullptr);
    _exit(127);
  }
  n.pid = fork();
  if (n.pid == 0) {
    execl(nginx.c_str(), nginx.c_str(), "-c", (dir + "/nginx.conf").c_str(), "-p", dir.c_str(), nullptr);
    _exit(127);
  }
  auto cleanup = [&] {
    kill(m.pid, SIGTERM);
    kill(n.pid, SIGQUIT);
    waitpid(m.pid, nullptr, 0);
    waitpid(n.pid, nullptr, 0);
    if (getenv("OBJECT_BENCH_KEEP")) return;
    std::string cmd = "rm -rf '" + dir + "'";
    if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", dir.c_str());
  };
  if (!waitListening(m.address, 20) || !waitListening(n.address, 20)) {
    std::cerr << "object_bench: a server did not start (see " << dir << ")\n";
    cleanup();
    return 2;
  }
  // The same objects on both: 4 KiB ones and one large one.
  std::string small(4096, 's');
  std::string big(bigMiB << 20, 'b');
  uint64_t failures = 0;
  for (Server* s : {&m, &n}) {
    Connection conn(parseTarget(s->address), 60);
    for (int i = 0; i <= objects; ++i) {
      bool isBig = i == objects;
      const std::string& body = isBig ? big : small;
      std::string path = s->prefix + (isBig ? "big" : "o" + std::to_string(i));
      Connection::Response r;
      std::string note;
      if (conn.connectIfNeeded(&note) >= 0 ||
          conn.exchange("PUT " + path + " HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                            std::to_string(body.size()) + "\r\n\r\n" + body,
                        r, note) >= 0 ||
          r.status / 100 != 2) {
        std::cerr << "object_bench: cannot store " << path << " on " << s->name << ": " << note
                  << " " << r.status << "\n";
        cleanup();
        return 2;
      }
      if (r.close) conn.closeFd();
    }
  }
  std::vector<double> getM, getN, putM, putN, bigM, bigN;
  for (int r = 0; r < rounds; ++r) {  // interleaved, so both see the same noise
    getM.push_back(drive(m, connections, seconds, false, objects, small, failures));
    getN.push_back(drive(n, connections, seconds, false, objects, small, failures));
    putM.push_back(drive(m, connections, seconds, true, objects, small, failures));
    putN.push_back(drive(n, connections, seconds, true, objects, small, failures));
    bigM.push_back(bigGet(m, "big", big.size(), failures));
    bigN.push_back(bigGet(n, "big", big.size(), failures));
  }
  cleanup();
  auto line = [](const char* what, const char* unit, const std::vector<double>& a,
                 const std::vector<double>& b) {
    std::printf("%-34s moltd %9.0f %-5s nginx %9.0f %-5s ratio %.2f\n", what, median(a), unit,
                median(b), unit, median(b) > 0 ? median(a) / median(b) : 0.0);
  };
  std::printf("object benchmark: %d connections, keep-alive, %d rounds of %.0fs, medians\n",
              connections, rounds, seconds);
  line("GET 4 KiB", "req/s", getM, getN);
  line("PUT 4 KiB (fsync on moltd)", "req/s", putM, putN);
  char label[64];
  std::snprintf(label, sizeof label, "GET %llu MiB, one connection", static_cast<unsigned long long>(bigMiB));
  line(label, "MB/s", bigM, bigN);
  std::printf("failed requests: %llu\n", static_cast<unsigned long long>(failures));
  return failures ? 1 : 0;
}
