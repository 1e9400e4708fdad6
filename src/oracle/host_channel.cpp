// pinlab — the controller/host-process wire (see host_channel.h).
#include "oracle/host_channel.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace pl::oracle {

namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kRequestMagic = 0x51524c50;  // "PLRQ"
constexpr uint32_t kReplyMagic = 0x50524c50;    // "PLRP"
constexpr size_t kRequestHeader = 4 + 4 + 8 + 8 * kChannelArgs + 8;
constexpr size_t kReplyHeader = 4 + 4 + 8 + 8;

// A deadline from a timeout in ms; a negative timeout never expires.
class Deadline {
public:
    explicit Deadline(int timeout_ms) : forever_(timeout_ms < 0), end_(Clock::now() + std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms)) {}
    // The poll() timeout left: -1 for ever, 0 once expired.
    int left_ms() const {
        if (forever_) return -1;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end_ - Clock::now()).count();
        return left > 0 ? static_cast<int>(left) : 0;
    }

private:
    bool forever_;
    Clock::time_point end_;
};

// Wait for `events` on sock: 0, -ETIMEDOUT, or -errno.
int wait_for(int sock, short events, const Deadline& dl) {
    for (;;) {
        pollfd p{sock, events, 0};
        int left = dl.left_ms();
        int r = ::poll(&p, 1, left);
        if (r > 0) return 0;  // ready, or HUP/ERR: the next call says which
        if (r == 0) return -ETIMEDOUT;
        if (errno != EINTR) return -errno;
    }
}

int closed_errno(int e) { return (e == EPIPE || e == ECONNRESET || e == ENOTCONN) ? -EPIPE : -e; }

// Send all of buf; the first sendmsg carries pass_fd (SCM_RIGHTS) if >= 0.
int send_all(int sock, const char* buf, size_t len, int pass_fd, const Deadline& dl) {
    size_t done = 0;
    bool fd_sent = pass_fd < 0;
    while (done < len) {
        iovec iov{const_cast<char*>(buf + done), len - done};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
        if (!fd_sent) {
            std::memset(control, 0, sizeof control);
            msg.msg_control = control;
            msg.msg_controllen = sizeof control;
            cmsghdr* c = CMSG_FIRSTHDR(&msg);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int));
            std::memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
        }
        ssize_t n = ::sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            done += static_cast<size_t>(n);
            fd_sent = true;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (int w = wait_for(sock, POLLOUT, dl); w < 0) return w;
            continue;
        }
        return n < 0 ? closed_errno(errno) : -EPIPE;
    }
    return 0;
}

// Take the descriptors of a received control message: the first goes to
// *fd_out if it is free, any other is closed (a peer cannot leak fds here).
void take_fds(msghdr& msg, int* fd_out) {
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (fd_out && *fd_out < 0)
                *fd_out = fd;
            else
                ::close(fd);
        }
    }
}

// One non-blocking recvmsg() of up to len bytes; descriptors that come
// along go to take_fds().
ssize_t recv_some(int sock, char* buf, size_t len, int* fd_out) {
    iovec iov{buf, len};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))];
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    const ssize_t n = ::recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n > 0) take_fds(msg, fd_out);
    return n;
}

// Receive exactly len bytes; EOF before them is -EPIPE.
int recv_all(int sock, char* buf, size_t len, int* fd_out, const Deadline& dl) {
    size_t done = 0;
    while (done < len) {
        const ssize_t n = recv_some(sock, buf + done, len - done, fd_out);
        if (n > 0) {
            done += static_cast<size_t>(n);
            continue;
        }
        if (n == 0) return -EPIPE;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (int w = wait_for(sock, POLLIN, dl); w < 0) return w;
            continue;
        }
        return closed_errno(errno);
    }
    return 0;
}

void put64(char* p, uint64_t v) { std::memcpy(p, &v, 8); }
void put32(char* p, uint32_t v) { std::memcpy(p, &v, 4); }
uint64_t get64(const char* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}
uint32_t get32(const char* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

}  // namespace

int channel_send_request(int sock, const ChannelRequest& req, int pass_fd, int timeout_ms) {
    if (req.bytes.size() > kMaxChannelBytes) return -E2BIG;
    Deadline dl(timeout_ms);
    char h[kRequestHeader];
    put32(h, kRequestMagic);
    put32(h + 4, static_cast<uint32_t>(req.op));
    put64(h + 8, static_cast<uint64_t>(req.fd_file));
    for (int i = 0; i < kChannelArgs; ++i) put64(h + 16 + 8 * i, static_cast<uint64_t>(req.args[i]));
    put64(h + 16 + 8 * kChannelArgs, req.bytes.size());
    if (int r = send_all(sock, h, sizeof h, pass_fd, dl); r < 0) return r;
    return send_all(sock, req.bytes.data(), req.bytes.size(), -1, dl);
}

int channel_recv_request(int sock, ChannelRequest* req, int timeout_ms) {
    Deadline dl(timeout_ms);
    char h[kRequestHeader];
    int fd = -1;
    int r = recv_all(sock, h, sizeof h, &fd, dl);
    uint64_t len = 0;
    if (r == 0) {
        len = get64(h + 16 + 8 * kChannelArgs);
        if (get32(h) != kRequestMagic || len > kMaxChannelBytes) r = -EPROTO;
    }
    if (r == 0) {
        req->op = static_cast<HostOp>(get32(h + 4));
        req->fd_file = static_cast<int64_t>(get64(h + 8));
        for (int i = 0; i < kChannelArgs; ++i) req->args[i] = static_cast<int64_t>(get64(h + 16 + 8 * i));
        req->bytes.assign(len, '\0');
        r = recv_all(sock, req->bytes.data(), len, nullptr, dl);
    }
    if (r < 0) {
        if (fd >= 0) ::close(fd);
        req->fd = -1;
        return r;
    }
    req->fd = fd;
    return 0;
}

int channel_send_reply(int sock, const ChannelReply& rep, int timeout_ms) {
    if (rep.bytes.size() > kMaxChannelBytes) return -E2BIG;
    Deadline dl(timeout_ms);
    char h[kReplyHeader];
    put32(h, kReplyMagic);
    put32(h + 4, 0);
    put64(h + 8, static_cast<uint64_t>(rep.ret));
    put64(h + 16, rep.bytes.size());
    if (int r = send_all(sock, h, sizeof h, -1, dl); r < 0) return r;
    return send_all(sock, rep.bytes.data(), rep.bytes.size(), -1, dl);
}

int channel_recv_reply(int sock, ChannelReply* rep, int timeout_ms) {
    Deadline dl(timeout_ms);
    char h[kReplyHeader];
    if (int r = recv_all(sock, h, sizeof h, nullptr, dl); r < 0) return r;
    uint64_t len = get64(h + 16);
    if (get32(h) != kReplyMagic || len > kMaxChannelBytes) return -EPROTO;
    rep->ret = static_cast<int64_t>(get64(h + 8));
    rep->bytes.assign(len, '\0');
    return recv_all(sock, rep->bytes.data(), len, nullptr, dl);
}

bool channel_wait_eof(int sock, int timeout_ms) {
    Deadline dl(timeout_ms);
    char sink[4096];
    for (;;) {
        const ssize_t n = recv_some(sock, sink, sizeof sink, nullptr);
        if (n > 0) continue;
        if (n == 0) return true;
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return errno == ECONNRESET || errno == EPIPE;
        if (wait_for(sock, POLLIN, dl) < 0) return false;
    }
}

}  // namespace pl::oracle
