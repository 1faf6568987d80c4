// The smallest HTTP client there is, for the examples: one POST to Triton's
// HTTP/JSON API over a plain socket (a real program would use Triton's C++
// client, gRPC, or its own). Shared by pooled_inference.cpp and
// shm_utils_client.cpp.
#pragma once

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <stdexcept>
#include <string>

namespace example {

// POSTs `body` to `path` and returns the response body; throws unless 200.
inline std::string post(const std::string& host, const std::string& port, const std::string& path,
                        const std::string& body) {
  addrinfo hints{}, *found = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0)
    throw std::runtime_error("cannot resolve " + host);
  const int fd = ::socket(found->ai_family, found->ai_socktype, found->ai_protocol);
  const bool connected = fd >= 0 && ::connect(fd, found->ai_addr, found->ai_addrlen) == 0;
  ::freeaddrinfo(found);
  if (!connected) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("cannot connect to " + host + ":" + port);
  }
  const std::string request = "POST " + path + " HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/json\r\n" +
                              "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  for (std::size_t sent = 0; sent < request.size();) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, 0);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  std::string response;
  char buffer[4096];
  for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) response.append(buffer, static_cast<std::size_t>(n));
  ::close(fd);
  const std::size_t head_end = response.find("\r\n\r\n");
  const std::string body_text = head_end == std::string::npos ? "" : response.substr(head_end + 4);
  if (response.compare(0, 12, "HTTP/1.1 200") != 0) {
    throw std::runtime_error(path + ": " + response.substr(0, response.find("\r\n")) + " " + body_text);
  }
  return body_text;
}

}  // namespace example
