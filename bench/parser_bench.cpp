// Measures the HTTP request parsers moltd could use, on typical requests:
// Boost.Beast's incremental request_parser, Node's http_parser (Debian's
// libhttp-parser) and Poco's HTTPRequest::read on an in-memory stream.
// Prints nanoseconds per request for each.
#include <http_parser.h>

#include <Poco/Net/HTTPRequest.h>

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include <chrono>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

namespace http = boost::beast::http;

namespace {

const std::vector<std::pair<const char*, std::string>> kRequests = {
    {"wrk GET", "GET /v1/bench/4k HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"},
    {"curl GET", "GET /v1/bench/object-with-a-longer-name.bin HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
                 "User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"},
    {"client PUT", "PUT /v1/photos/2024/06/holiday/IMG_0042.jpg HTTP/1.1\r\nHost: storage.example\r\n"
                   "User-Agent: python-swiftclient-4.3.0\r\nAccept-Encoding: gzip, deflate\r\n"
                   "Accept: */*\r\nConnection: keep-alive\r\nContent-Type: image/jpeg\r\n"
                   "X-Object-Meta-Camera: X100V\r\nX-Object-Meta-Owner: alice\r\n"
                   "ETag: 9e107d9d372bb6826bd81d3542a419d6\r\nContent-Length: 4096\r\n\r\n"},
};

template <typename Fn>
double nsPerRequest(Fn&& parseOnce, int rounds) {
  for (int i = 0; i < rounds / 10; ++i) parseOnce();  // warm up
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < rounds; ++i) parseOnce();
  auto elapsed = std::chrono::steady_clock::now() - start;
  return std::chrono::duration<double, std::nano>(elapsed).count() / rounds;
}

volatile size_t sink;

void beastParse(const std::string& text) {
  http::request_parser<http::empty_body> parser;
  parser.header_limit(64 * 1024);
  boost::system::error_code ec;
  parser.put(boost::asio::const_buffer(text.data(), text.size()), ec);
  if (ec || !parser.is_header_done()) std::abort();
  const auto& req = parser.get();
  sink = req.target().size() + req[http::field::host].size() + (req.keep_alive() ? 1 : 0);
}

// http_parser hands out spans; collecting them into strings is part of the
// cost, as the server must keep the fields it uses.
struct CollectedRequest {
  std::string url;
  std::vector<std::pair<std::string, std::string>> fields;
  bool lastWasValue = true;
  bool done = false;
};

http_parser_settings httpParserSettings() {
  http_parser_settings s{};
  s.on_url = [](http_parser* p, const char* at, size_t n) {
    static_cast<CollectedRequest*>(p->data)->url.append(at, n);
    return 0;
  };
  s.on_header_field = [](http_parser* p, const char* at, size_t n) {
    auto* r = static_cast<CollectedRequest*>(p->data);
    if (r->lastWasValue) r->fields.emplace_back();
    r->fields.back().first.append(at, n);
    r->lastWasValue = false;
    return 0;
  };
  s.on_header_value = [](http_parser* p, const char* at, size_t n) {
    auto* r = static_cast<CollectedRequest*>(p->data);
    r->fields.back().second.append(at, n);
    r->lastWasValue = true;
    return 0;
  };
  s.on_headers_complete = [](http_parser* p) {
    static_cast<CollectedRequest*>(p->data)->done = true;
    return 1;  // no body is parsed here
  };
  return s;
}

void httpParserParse(const std::string& text, const http_parser_settings& settings) {
  http_parser parser;
  http_parser_init(&parser, HTTP_REQUEST);
  CollectedRequest req;
  parser.data = &req;
  http_parser_execute(&parser, &settings, text.data(), text.size());
  if (!req.done) std::abort();
  sink = req.url.size() + req.fields.size() + http_should_keep_alive(&parser);
}

void pocoParse(const std::string& text) {
  std::istringstream in(text);
  Poco::Net::HTTPRequest req;
  req.read(in);
  sink = req.getURI().size() + req.getHost().size() + (req.getKeepAlive() ? 1 : 0);
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = argc > 1 ? std::atoi(argv[1]) : 200000;
  auto settings = httpParserSettings();
  std::printf("%-12s %14s %14s %14s   (ns per request, %d rounds)\n", "request", "beast",
              "http_parser", "poco", rounds);
  for (const auto& [name, text] : kRequests) {
    double beast = nsPerRequest([&] { beastParse(text); }, rounds);
    double hp = nsPerRequest([&] { httpParserParse(text, settings); }, rounds);
    double poco = nsPerRequest([&] { pocoParse(text); }, rounds);
    std::printf("%-12s %14.0f %14.0f %14.0f\n", name, beast, hp, poco);
  }
  return 0;
}
