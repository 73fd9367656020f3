// ws-load: a WebSocket (RFC 6455) load generator for bunpoll's benchmarks. Single-threaded,
// epoll, nonblocking; written in C so that the generator is not the bottleneck: a JS client
// spends more CPU per message than the servers it measures. It shares no code with bunpoll.
//
//   ws-load --port P [--host 127.0.0.1] [--path /ws/echo] [--mode echo|publish|idle]
//       [--conns C] [--depth D] [--size S] [--text] [--deflate] [--duration SEC] [--warmup SEC]
//       [--window W] [--lag L] [--server-pid PID] [--hold SEC] [--sources K]
//       [--connect-concurrency N]
//
// Every connection does a real opening handshake: a random Sec-WebSocket-Key, the
// Sec-WebSocket-Accept checked (SHA-1 below), and client frames masked. Each connection
// masks with its own random key, fixed for its life (a message's frame is built once and
// sent again and again: the server unmasks every byte either way).
//
// echo: every connection keeps D messages of S bytes in flight (closed loop: each reply
//   sends one new message, the replies of one read leave in one write). Replies are matched
//   FIFO to their send times (one RTT each). --conns 1 --depth 1 is ping-pong.
// publish: C connections open --path (a /ws/pub endpoint: the server subscribes every socket
//   to one topic and publishes each message it receives to that topic, sender included).
//   Connection 0 is also the publisher: it keeps W publishes in flight, a publish completing
//   when its own copy comes back (its latency), and never runs more than L publishes ahead
//   of the slowest subscriber (so server queues stay bounded; lagLimitedPct says how often
//   that bound held it). Deliveries = messages received by all C connections.
// idle: open C connections, print {"event":"connected",...}, then hold them (answering
//   pings) until stdin closes, SIGINT/SIGTERM, or --hold seconds pass. --sources K binds
//   them to 127.0.0.1..K (IP_BIND_ADDRESS_NO_PORT) so that 10,000s fit in the port range.
// --deflate offers permessage-deflate (client_max_window_bits). In echo mode the message is
//   then compressed with zlib once (raw deflate, its 00 00 ff ff tail dropped, RSV1 set) and
//   that frame is sent every time: the server inflates and (if it chooses) deflates each
//   message; the generator counts replies and how many had RSV1 but does not inflate them.
//
// Measurement: after the warm-up, counters reset; the server's CPU (the scheduler's exact
// runtime from /proc/PID/task/*/schedstat; its user/sys split from /proc/PID/stat ticks),
// this process's CPU (getrusage) and the machine's (/proc/stat) are read at both edges of
// the window. It stops by itself and prints one JSON line, in the field names of
// bench/loadgen.ts so the runner reads both alike.

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#ifdef WITH_ZLIB
#include <zlib.h>
#endif

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

// ---------------------------------------------------------------------------------------
// Options

enum { MODE_ECHO, MODE_PUBLISH, MODE_IDLE };
static struct {
  const char *host;
  int port;
  const char *path;
  int mode;
  int conns, depth, size;
  int text, deflate;
  double duration, warmup, hold;
  int window, lag;
  int server_pid;
  int sources;
  int concurrency;
} opt = {"127.0.0.1", 0, NULL, MODE_ECHO, 50, 16, 64, 0, 0, 5, 1, 300, 16, 64, 0, 1, 256};

static void usage(const char *msg) {
  fprintf(stderr,
          "ws-load: %s\nusage: ws-load --port P [--host 127.0.0.1] [--path /ws/echo] [--mode echo|publish|idle] "
          "[--conns C] [--depth D] [--size S] [--text] [--deflate] [--duration SEC] [--warmup SEC] [--window W] "
          "[--lag L] [--server-pid PID] [--hold SEC] [--sources K] [--connect-concurrency N]\n",
          msg);
  exit(2);
}

// ---------------------------------------------------------------------------------------
// Time, /proc

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double own_cpu_us(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_sec * 1e6 + ru.ru_stime.tv_usec;
}

/** Server CPU in ns, exact: sum_exec_runtime of every thread; -1 if unavailable. */
static double server_cpu_ns(int pid) {
  if (pid <= 0) return -1;
  char p[64];
  snprintf(p, sizeof p, "/proc/%d/task", pid);
  DIR *d = opendir(p);
  if (!d) return -1;
  double total = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char f[320];
    snprintf(f, sizeof f, "/proc/%d/task/%s/schedstat", pid, e->d_name);
    FILE *fp = fopen(f, "r");
    if (!fp) continue;
    unsigned long long ns;
    if (fscanf(fp, "%llu", &ns) == 1) total += (double)ns;
    fclose(fp);
  }
  closedir(d);
  return total;
}

/** utime and stime ticks of a process (fields 14, 15 of /proc/PID/stat). */
static int server_ticks(int pid, double *user, double *sys) {
  if (pid <= 0) return -1;
  char p[64], buf[2048];
  snprintf(p, sizeof p, "/proc/%d/stat", pid);
  FILE *fp = fopen(p, "r");
  if (!fp) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, fp);
  fclose(fp);
  buf[n] = 0;
  char *s = strrchr(buf, ')');
  if (!s) return -1;
  s += 2; // field 3
  int field = 3;
  char *tok = strtok(s, " ");
  while (tok && field < 14) {
    tok = strtok(NULL, " ");
    field++;
  }
  if (!tok) return -1;
  *user = atof(tok);
  tok = strtok(NULL, " ");
  if (!tok) return -1;
  *sys = atof(tok);
  return 0;
}

/** Machine-wide busy and steal time (µs) from /proc/stat's cpu line. */
static int machine_cpu(double *busy, double *steal) {
  FILE *fp = fopen("/proc/stat", "r");
  if (!fp) return -1;
  unsigned long long v[10] = {0};
  int n = fscanf(fp, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                 &v[6], &v[7], &v[8], &v[9]);
  fclose(fp);
  if (n < 8) return -1;
  double tick = 1e6 / (double)sysconf(_SC_CLK_TCK);
  *busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6]) * tick;
  *steal = (double)v[7] * tick;
  return 0;
}

// ---------------------------------------------------------------------------------------
// Latency histogram: exact below 256 ns, then 128 sub-buckets per power of two (<= 0.8%).

#define HBUCKETS (256 + 40 * 128)
static uint64_t hist[HBUCKETS];
static uint64_t hist_max;

static void hist_add(uint64_t v) {
  if (v > hist_max) hist_max = v;
  unsigned idx;
  if (v < 256) idx = (unsigned)v;
  else {
    int e = 63 - __builtin_clzll(v);
    if (e > 47) e = 47, v = (1ull << 48) - 1;
    idx = 256 + (unsigned)(e - 8) * 128 + (unsigned)((v >> (e - 7)) & 127);
  }
  hist[idx]++;
}

static double hist_value(unsigned idx) {
  if (idx < 256) return idx;
  unsigned e = (idx - 256) / 128 + 8, sub = (idx - 256) % 128;
  double lo = (double)((128ull + sub) << (e - 7)), width = (double)(1ull << (e - 7));
  return lo + width / 2;
}

static double hist_pct(double q) {
  uint64_t total = 0;
  for (unsigned i = 0; i < HBUCKETS; i++) total += hist[i];
  if (total == 0) return -1;
  uint64_t rank = (uint64_t)(q * (double)total);
  if (rank >= total) rank = total - 1;
  uint64_t seen = 0;
  for (unsigned i = 0; i < HBUCKETS; i++) {
    seen += hist[i];
    if (seen > rank) return hist_value(i) < (double)hist_max ? hist_value(i) : (double)hist_max;
  }
  return (double)hist_max;
}

// ---------------------------------------------------------------------------------------
// SHA-1 (for Sec-WebSocket-Accept) and base64

static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1(const uint8_t *msg, size_t len, uint8_t out[20]) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  size_t total = ((len + 8) / 64 + 1) * 64;
  uint8_t *m = calloc(total, 1);
  memcpy(m, msg, len);
  m[len] = 0x80;
  uint64_t bits = (uint64_t)len * 8;
  for (int i = 0; i < 8; i++) m[total - 1 - i] = (uint8_t)(bits >> (8 * i));
  for (size_t off = 0; off < total; off += 64) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
      w[i] = (uint32_t)m[off + 4 * i] << 24 | (uint32_t)m[off + 4 * i + 1] << 16 | (uint32_t)m[off + 4 * i + 2] << 8 |
             m[off + 4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
      uint32_t f, k;
      if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
      else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
      else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
      else f = b ^ c ^ d, k = 0xCA62C1D6;
      uint32_t t = rol(a, 5) + f + e + k + w[i];
      e = d, d = c, c = rol(b, 30), b = a, a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
  }
  free(m);
  for (int i = 0; i < 5; i++)
    out[4 * i] = (uint8_t)(h[i] >> 24), out[4 * i + 1] = (uint8_t)(h[i] >> 16), out[4 * i + 2] = (uint8_t)(h[i] >> 8),
                out[4 * i + 3] = (uint8_t)h[i];
}

static void base64(const uint8_t *in, size_t n, char *out) {
  static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
    out[o++] = t[(v >> 18) & 63];
    out[o++] = t[(v >> 12) & 63];
    out[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < n ? t[v & 63] : '=';
  }
  out[o] = 0;
}

// ---------------------------------------------------------------------------------------
// Connections

enum { C_CONNECTING, C_HANDSHAKE, C_OPEN, C_CLOSED };

typedef struct {
  int fd;
  int state;
  char accept[32];    // the Sec-WebSocket-Accept we expect
  char *head;         // the handshake response, gathered
  int head_len;
  // frame parser (server frames: never masked)
  uint8_t hdr[14];
  int hdr_len;
  uint64_t skip;      // payload bytes of the current frame still to come
  int cur_opcode, cur_fin, cur_rsv1;
  uint8_t ctl[125];   // a control frame's payload (a ping is answered with it)
  int ctl_len;
  // echo: send times of the messages in flight, FIFO
  uint64_t *sent_at;
  int sent_head, in_flight;
  // pending output (a write the kernel did not take whole)
  uint8_t *out;
  int out_len, out_cap;
  uint64_t received;  // data messages received (in the window)
  uint64_t received_total;
  int deflate_ok;     // the server accepted permessage-deflate
} Conn;

static Conn *conns;
static int epfd;
static uint8_t *frame;     // one message's frame, masked (per connection: mask differs)
static int frame_len;
static uint8_t **frames;   // per connection
static uint8_t *wbuf;      // a batch of frames
static int wbuf_cap;

// counters
static int measuring;
static uint64_t msgs, protocol_errors, unexpected_closes, compressed_replies;
static int open_count, failed_count, done_handshakes;
static char first_error[200];
static volatile sig_atomic_t stop_flag;

// publish
static uint64_t pub_sent, pub_done;  // publishes sent, and seen back by the publisher
static uint64_t *pub_sent_at;        // ring of window
static uint64_t pumps, lag_limited;

static void note_error(const char *fmt, const char *detail) {
  if (first_error[0] == 0) snprintf(first_error, sizeof first_error, fmt, detail);
}

static void conn_close(Conn *c, int unexpected) {
  if (c->state == C_CLOSED) return;
  if (c->state == C_OPEN) open_count--;
  if (unexpected && c->state == C_OPEN) unexpected_closes++;
  if (c->state != C_OPEN) failed_count++;
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  c->state = C_CLOSED;
  free(c->head);
  c->head = NULL;
}

/** Writes bytes now; what the kernel does not take is kept and EPOLLOUT armed. */
static void conn_write(Conn *c, const uint8_t *p, int n) {
  if (c->state == C_CLOSED) return;
  if (c->out_len == 0) {
    ssize_t w = send(c->fd, p, (size_t)n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno != EAGAIN) {
        note_error("send: %s", strerror(errno));
        conn_close(c, 1);
        return;
      }
      w = 0;
    }
    if (w == n) return;
    p += w, n -= (int)w;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)(c - conns)};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
  }
  if (c->out_len + n > c->out_cap) {
    c->out_cap = (c->out_len + n) * 2;
    c->out = realloc(c->out, (size_t)c->out_cap);
  }
  memcpy(c->out + c->out_len, p, (size_t)n);
  c->out_len += n;
}

static void conn_flush(Conn *c) {
  if (c->out_len == 0) return;
  ssize_t w = send(c->fd, c->out, (size_t)c->out_len, MSG_NOSIGNAL);
  if (w < 0) {
    if (errno == EAGAIN) return;
    note_error("send: %s", strerror(errno));
    conn_close(c, 1);
    return;
  }
  memmove(c->out, c->out + w, (size_t)(c->out_len - w));
  c->out_len -= (int)w;
  if (c->out_len == 0) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)(c - conns)};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
  }
}

/** Sends k copies of the connection's message frame in one write. */
static void send_messages(Conn *c, int k, uint64_t t) {
  if (k <= 0) return;
  int need = k * frame_len;
  if (need > wbuf_cap) {
    wbuf_cap = need * 2;
    wbuf = realloc(wbuf, (size_t)wbuf_cap);
  }
  const uint8_t *f = frames[c - conns];
  for (int i = 0; i < k; i++) memcpy(wbuf + i * frame_len, f, (size_t)frame_len);
  if (opt.mode == MODE_ECHO) {
    for (int i = 0; i < k; i++) {
      c->sent_at[(c->sent_head + c->in_flight) % opt.depth] = t;
      c->in_flight++;
    }
  } else {
    for (int i = 0; i < k; i++) pub_sent_at[(pub_sent + (uint64_t)i) % (uint64_t)opt.window] = t;
    pub_sent += (uint64_t)k;
  }
  conn_write(c, wbuf, need);
}

/** Builds a masked client frame with the given payload, opcode and RSV1. */
static int build_frame(uint8_t *out, int opcode, int rsv1, const uint8_t *payload, int n) {
  int h = 0;
  out[h++] = (uint8_t)(0x80 | (rsv1 ? 0x40 : 0) | opcode);
  if (n < 126) out[h++] = (uint8_t)(0x80 | n);
  else if (n < 65536) out[h++] = 0x80 | 126, out[h++] = (uint8_t)(n >> 8), out[h++] = (uint8_t)n;
  else {
    out[h++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--) out[h++] = (uint8_t)((uint64_t)n >> (8 * i));
  }
  uint8_t key[4];
  if (getrandom(key, 4, 0) != 4) memset(key, 0x5a, 4);
  memcpy(out + h, key, 4);
  h += 4;
  for (int i = 0; i < n; i++) out[h + i] = payload[i] ^ key[i & 3];
  return h + n;
}

static void send_pong(Conn *c) {
  uint8_t f[14 + 125];
  int n = build_frame(f, 0xA, 0, c->ctl, c->ctl_len);
  conn_write(c, f, n);
}

/** The slowest subscriber's count of deliveries (publish mode). */
static uint64_t min_received(void) {
  uint64_t m = UINT64_MAX;
  for (int i = 0; i < opt.conns; i++)
    if (conns[i].state == C_OPEN && conns[i].received_total < m) m = conns[i].received_total;
  return m == UINT64_MAX ? 0 : m;
}

/** Publish mode: the publisher fills its window, within the lag bound. */
static void pump(uint64_t t) {
  Conn *p = &conns[0];
  if (p->state != C_OPEN || done_handshakes < opt.conns) return;
  uint64_t inflight = pub_sent - pub_done;
  if (inflight >= (uint64_t)opt.window) return;
  int k = (int)((uint64_t)opt.window - inflight);
  uint64_t slow = min_received();
  uint64_t ahead = pub_sent - slow;
  int by_lag = ahead >= (uint64_t)opt.lag ? 0 : (int)((uint64_t)opt.lag - ahead);
  if (measuring) pumps++;
  if (by_lag < k) {
    if (measuring) lag_limited++;
    k = by_lag;
  }
  send_messages(p, k, t);
}

/** One whole data message arrived on c (at time t). */
static void on_message(Conn *c, uint64_t t, int *replies) {
  c->received_total++;
  if (measuring) c->received++, msgs++;
  if (c->cur_rsv1 && measuring) compressed_replies++;
  if (opt.mode == MODE_ECHO) {
    if (c->in_flight == 0) {
      protocol_errors++;
      return;
    }
    uint64_t s = c->sent_at[c->sent_head];
    c->sent_head = (c->sent_head + 1) % opt.depth;
    c->in_flight--;
    if (measuring) hist_add(t - s);
    (*replies)++;
  } else if (opt.mode == MODE_PUBLISH && c == &conns[0]) {
    if (pub_done >= pub_sent) {
      protocol_errors++;
      return;
    }
    uint64_t s = pub_sent_at[pub_done % (uint64_t)opt.window];
    pub_done++;
    if (measuring) hist_add(t - s);
  }
}

/** Parses server frames in buf[0, n). */
static void parse_frames(Conn *c, const uint8_t *buf, int n, uint64_t t, int *replies) {
  int pos = 0;
  while (pos < n && c->state == C_OPEN) {
    if (c->skip > 0) {
      int take = (uint64_t)(n - pos) < c->skip ? n - pos : (int)c->skip;
      if (c->cur_opcode >= 8 && c->ctl_len + take <= 125) memcpy(c->ctl + c->ctl_len, buf + pos, (size_t)take), c->ctl_len += take;
      pos += take;
      c->skip -= (uint64_t)take;
      if (c->skip > 0) return;
    } else {
      // header bytes
      while (c->hdr_len < 2 && pos < n) c->hdr[c->hdr_len++] = buf[pos++];
      if (c->hdr_len < 2) return;
      int len7 = c->hdr[1] & 0x7f;
      if (c->hdr[1] & 0x80) {
        protocol_errors++;
        note_error("%s", "a masked frame from the server");
        conn_close(c, 1);
        return;
      }
      int need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
      while (c->hdr_len < need && pos < n) c->hdr[c->hdr_len++] = buf[pos++];
      if (c->hdr_len < need) return;
      uint64_t len = (uint64_t)len7;
      if (len7 == 126) len = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
      else if (len7 == 127) {
        len = 0;
        for (int i = 2; i < 10; i++) len = len << 8 | c->hdr[i];
      }
      c->cur_fin = (c->hdr[0] & 0x80) != 0;
      c->cur_rsv1 = (c->hdr[0] & 0x40) != 0 || (c->cur_opcode != 0 && c->cur_rsv1 && (c->hdr[0] & 0x0f) == 0);
      int op = c->hdr[0] & 0x0f;
      if (op != 0) c->cur_opcode = op;
      c->hdr_len = 0;
      c->skip = len;
      c->ctl_len = 0;
      if (len > 0) continue;
    }
    // a frame is complete
    int op = c->cur_opcode;
    if (op == 0x9) send_pong(c);
    else if (op == 0x8) {
      note_error("%s", "the server closed the WebSocket");
      conn_close(c, 1);
      return;
    } else if (op == 0x1 || op == 0x2) {
      if (c->cur_fin) on_message(c, t, replies);
    } else if (op != 0xA) {
      protocol_errors++;
    }
  }
}

static void start_connect(int i) {
  Conn *c = &conns[i];
  memset(c, 0, sizeof *c);
  if (opt.mode == MODE_ECHO) c->sent_at = calloc((size_t)opt.depth, sizeof(uint64_t));
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    note_error("socket: %s", strerror(errno));
    c->state = C_CLOSED;
    failed_count++;
    return;
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (opt.sources > 1) {
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = 0};
    src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(i % opt.sources));
    if (bind(c->fd, (struct sockaddr *)&src, sizeof src) < 0) note_error("bind: %s", strerror(errno));
  }
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
  inet_pton(AF_INET, opt.host, &a.sin_addr);
  int r = connect(c->fd, (struct sockaddr *)&a, sizeof a);
  if (r < 0 && errno != EINPROGRESS) {
    note_error("connect: %s", strerror(errno));
    close(c->fd);
    c->state = C_CLOSED;
    failed_count++;
    return;
  }
  c->state = C_CONNECTING;
  struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)i};
  epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

static void send_handshake(Conn *c) {
  uint8_t raw[16];
  char key[32], req[512];
  if (getrandom(raw, 16, 0) != 16) memset(raw, 7, 16);
  base64(raw, 16, key);
  char cat[96];
  snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
  uint8_t dig[20];
  sha1((const uint8_t *)cat, strlen(cat), dig);
  base64(dig, 20, c->accept);
  int n = snprintf(req, sizeof req,
                   "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                   opt.path, opt.host, opt.port, key,
                   opt.deflate ? "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" : "");
  c->state = C_HANDSHAKE;
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)(c - conns)};
  epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
  conn_write(c, (const uint8_t *)req, n);
}

/** Case-insensitive search for a header's value in the response head; copies it to out. */
static int header_value(const char *head, const char *name, char *out, size_t cap) {
  size_t nl = strlen(name);
  for (const char *p = strstr(head, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n")) {
    const char *l = p + 2;
    if (strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
      const char *v = l + nl + 1;
      while (*v == ' ' || *v == '\t') v++;
      const char *e = strstr(v, "\r\n");
      size_t len = e ? (size_t)(e - v) : strlen(v);
      while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t')) len--;
      if (len >= cap) len = cap - 1;
      memcpy(out, v, len);
      out[len] = 0;
      return 1;
    }
  }
  return 0;
}

static uint8_t rbuf[256 * 1024];
static int next_to_connect, pending_connects;

static void handshake_done(Conn *c, uint64_t t) {
  (void)t;
  c->state = C_OPEN;
  open_count++;
  done_handshakes++;
  pending_connects--;
}

/** Reads the handshake response; on 101 with the right accept key the connection is open. */
static void read_handshake(Conn *c, uint64_t t, int *replies) {
  ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
  if (r <= 0) {
    if (r < 0 && errno == EAGAIN) return;
    note_error("%s", r == 0 ? "the server closed during the handshake" : strerror(errno));
    conn_close(c, 0);
    pending_connects--;
    return;
  }
  c->head = realloc(c->head, (size_t)(c->head_len + r + 1));
  memcpy(c->head + c->head_len, rbuf, (size_t)r);
  c->head_len += (int)r;
  c->head[c->head_len] = 0;
  char *end = strstr(c->head, "\r\n\r\n");
  if (!end) {
    if (c->head_len > 8192) {
      note_error("%s", "an oversized handshake response");
      conn_close(c, 0);
      pending_connects--;
    }
    return;
  }
  *end = 0;
  char v[256];
  if (strncmp(c->head, "HTTP/1.1 101", 12) != 0) {
    char line[120];
    snprintf(line, sizeof line, "%.100s", c->head);
    char *nl = strchr(line, '\r');
    if (nl) *nl = 0;
    note_error("handshake refused: %s", line);
    conn_close(c, 0);
    pending_connects--;
    return;
  }
  if (!header_value(c->head, "sec-websocket-accept", v, sizeof v) || strcmp(v, c->accept) != 0) {
    note_error("%s", "a wrong Sec-WebSocket-Accept");
    conn_close(c, 0);
    pending_connects--;
    return;
  }
  if (header_value(c->head, "sec-websocket-extensions", v, sizeof v) && strstr(v, "permessage-deflate")) c->deflate_ok = 1;
  int after = (int)(end + 4 - c->head);
  int rest = c->head_len - after;
  uint8_t *leftover = NULL;
  if (rest > 0) {
    leftover = malloc((size_t)rest);
    memcpy(leftover, c->head + after, (size_t)rest);
  }
  free(c->head);
  c->head = NULL;
  handshake_done(c, t);
  if (leftover) {
    parse_frames(c, leftover, rest, t, replies);
    free(leftover);
  }
}

static void connect_more(void) {
  while (next_to_connect < opt.conns && pending_connects < opt.concurrency) {
    start_connect(next_to_connect++);
    if (conns[next_to_connect - 1].state != C_CLOSED) pending_connects++;
  }
}

static void on_signal(int s) {
  (void)s;
  stop_flag = 1;
}

// ---------------------------------------------------------------------------------------

static void build_message(void) {
  uint8_t *payload = malloc((size_t)opt.size + 1);
  // Text-like content: compressible, valid UTF-8 (ASCII), as a chat or JSON message is.
  static const char words[] = "{\"user\":\"alice\",\"text\":\"hello world, the quick brown fox\",\"n\":12345} ";
  for (int i = 0; i < opt.size; i++) payload[i] = (uint8_t)words[i % (sizeof words - 1)];
  const uint8_t *body = payload;
  int body_len = opt.size, rsv1 = 0;
#ifdef WITH_ZLIB
  uint8_t *z = NULL;
  if (opt.deflate && opt.mode == MODE_ECHO) {
    z_stream s;
    memset(&s, 0, sizeof s);
    if (deflateInit2(&s, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK) {
      uLong cap = deflateBound(&s, (uLong)opt.size) + 16;
      z = malloc(cap);
      s.next_in = payload, s.avail_in = (uInt)opt.size, s.next_out = z, s.avail_out = (uInt)cap;
      if (deflate(&s, Z_SYNC_FLUSH) == Z_OK && s.total_out >= 4) {
        body = z;
        body_len = (int)s.total_out - 4; // the 00 00 ff ff tail is not sent (RFC 7692 §7.2.1)
        rsv1 = 1;
      }
      deflateEnd(&s);
    }
  }
#else
  if (opt.deflate) fprintf(stderr, "ws-load: built without zlib: --deflate negotiates but sends uncompressed frames\n");
#endif
  frame_len = 14 + body_len;
  frames = calloc((size_t)opt.conns, sizeof *frames);
  for (int i = 0; i < opt.conns; i++) {
    frames[i] = malloc((size_t)frame_len);
    frame_len = build_frame(frames[i], opt.text ? 1 : 2, rsv1, body, body_len);
  }
  frame = frames[0];
  free(payload);
#ifdef WITH_ZLIB
  free(z);
#endif
}

static void json_str(const char *s) {
  putchar('"');
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') printf("\\%c", *s);
    else if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
    else putchar(*s);
  }
  putchar('"');
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
#define VAL() (i + 1 < argc ? argv[++i] : (usage("missing value"), ""))
    if (!strcmp(a, "--host")) opt.host = VAL();
    else if (!strcmp(a, "--port")) opt.port = atoi(VAL());
    else if (!strcmp(a, "--path")) opt.path = VAL();
    else if (!strcmp(a, "--mode")) {
      const char *m = VAL();
      opt.mode = !strcmp(m, "echo") ? MODE_ECHO : !strcmp(m, "publish") ? MODE_PUBLISH : !strcmp(m, "idle") ? MODE_IDLE : -1;
      if (opt.mode < 0) usage("unknown mode");
    } else if (!strcmp(a, "--conns")) opt.conns = atoi(VAL());
    else if (!strcmp(a, "--depth")) opt.depth = atoi(VAL());
    else if (!strcmp(a, "--size")) opt.size = atoi(VAL());
    else if (!strcmp(a, "--text")) opt.text = 1;
    else if (!strcmp(a, "--deflate")) opt.deflate = 1;
    else if (!strcmp(a, "--duration")) opt.duration = atof(VAL());
    else if (!strcmp(a, "--warmup")) opt.warmup = atof(VAL());
    else if (!strcmp(a, "--window")) opt.window = atoi(VAL());
    else if (!strcmp(a, "--lag")) opt.lag = atoi(VAL());
    else if (!strcmp(a, "--server-pid")) opt.server_pid = atoi(VAL());
    else if (!strcmp(a, "--hold")) opt.hold = atof(VAL());
    else if (!strcmp(a, "--sources")) opt.sources = atoi(VAL());
    else if (!strcmp(a, "--connect-concurrency")) opt.concurrency = atoi(VAL());
    else if (!strcmp(a, "--json")) { /* always JSON */
    } else usage("unknown argument");
  }
  if (opt.port <= 0 || opt.port > 65535) usage("--port is required");
  if (opt.conns <= 0 || opt.depth <= 0 || opt.size < 0 || opt.window <= 0 || opt.lag < opt.window || opt.sources < 1 ||
      opt.sources > 250)
    usage("bad --conns, --depth, --size, --window, --lag (>= window) or --sources (1-250)");
  if (opt.path == NULL) opt.path = opt.mode == MODE_PUBLISH ? "/ws/pub" : "/ws/echo";
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);

  conns = calloc((size_t)opt.conns, sizeof *conns);
  pub_sent_at = calloc((size_t)opt.window, sizeof(uint64_t));
  build_message();
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (opt.mode == MODE_IDLE) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev); // stdin: its end is the signal to stop (if it is a pipe)
  }

  const uint64_t t_start = now_ns();
  const uint64_t connect_deadline = t_start + 60ull * 1000000000ull;
  uint64_t connected_at = 0, warm_end = 0, window_end = 0, hold_end = 0;
  double cpu0 = 0, own0 = 0, busy0 = 0, steal0 = 0, u0 = 0, s0 = 0;
  int have_machine0 = 0, have_ticks0 = 0;
  double srv_cpu_us = -1, own_cpu = 0, busy = 0, steal = 0, tick_user = 0, tick_sys = 0;
  int have_ticks = 0, have_machine = 0;
  uint64_t t_window0 = 0, t_window1 = 0;
  struct epoll_event evs[256];
  connect_more();

  while (!stop_flag) {
    uint64_t t = now_ns();
    // phases
    if (connected_at == 0 && (done_handshakes + failed_count >= opt.conns || t > connect_deadline)) {
      connected_at = t;
      if (opt.mode == MODE_IDLE) {
        printf("{\"event\":\"connected\",\"conns\":%d,\"failed\":%d,\"firstError\":", open_count, opt.conns - open_count);
        json_str(first_error);
        printf(",\"connectMs\":%.1f,\"deflateAccepted\":%d}\n", (double)(t - t_start) / 1e6, ({
                 int d = 0;
                 for (int i = 0; i < opt.conns; i++) d += conns[i].state == C_OPEN && conns[i].deflate_ok;
                 d;
               }));
        fflush(stdout);
        hold_end = t + (uint64_t)(opt.hold * 1e9);
      } else {
        if (open_count < opt.conns) {
          fprintf(stderr, "ws-load: only %d of %d connections opened: %s\n", open_count, opt.conns, first_error);
          return 1;
        }
        warm_end = t + (uint64_t)(opt.warmup * 1e9);
        window_end = warm_end + (uint64_t)(opt.duration * 1e9);
        // start the load
        if (opt.mode == MODE_ECHO)
          for (int i = 0; i < opt.conns; i++) send_messages(&conns[i], opt.depth, t);
        else pump(t);
      }
    }
    if (opt.mode == MODE_IDLE && hold_end != 0 && t >= hold_end) break;
    if (warm_end != 0 && !measuring && t_window0 == 0 && t >= warm_end) {
      measuring = 1;
      msgs = protocol_errors = unexpected_closes = compressed_replies = 0;
      pumps = lag_limited = 0;
      memset(hist, 0, sizeof hist);
      hist_max = 0;
      for (int i = 0; i < opt.conns; i++) conns[i].received = 0;
      t_window0 = now_ns();
      own0 = own_cpu_us();
      cpu0 = server_cpu_ns(opt.server_pid);
      have_ticks0 = server_ticks(opt.server_pid, &u0, &s0) == 0;
      have_machine0 = machine_cpu(&busy0, &steal0) == 0;
    }
    if (measuring && t >= window_end) {
      t_window1 = now_ns();
      own_cpu = own_cpu_us() - own0;
      double cpu1 = server_cpu_ns(opt.server_pid);
      if (cpu0 >= 0 && cpu1 >= 0) srv_cpu_us = (cpu1 - cpu0) / 1000;
      double u1, s1;
      have_ticks = have_ticks0 && server_ticks(opt.server_pid, &u1, &s1) == 0;
      if (have_ticks) tick_user = u1 - u0, tick_sys = s1 - s0;
      double b1, st1;
      have_machine = have_machine0 && machine_cpu(&b1, &st1) == 0;
      if (have_machine) busy = b1 - busy0, steal = st1 - steal0;
      measuring = 0;
      break;
    }
    int timeout = 10;
    int n = epoll_wait(epfd, evs, 256, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("epoll_wait");
      return 1;
    }
    t = now_ns();
    for (int e = 0; e < n; e++) {
      uint32_t idx = evs[e].data.u32;
      if (idx == UINT32_MAX) {
        char b[64];
        ssize_t r = read(0, b, sizeof b);
        if (r <= 0) stop_flag = 1;
        if (r == 0) epoll_ctl(epfd, EPOLL_CTL_DEL, 0, NULL);
        continue;
      }
      Conn *c = &conns[idx];
      if (c->state == C_CLOSED) continue;
      int replies = 0;
      if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
          note_error("connect: %s", strerror(err));
          conn_close(c, 0);
          pending_connects--;
          continue;
        }
        send_handshake(c);
        continue;
      }
      if (evs[e].events & EPOLLOUT) conn_flush(c);
      if (c->state == C_HANDSHAKE) {
        if (evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_handshake(c, t, &replies);
      } else if (evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        for (;;) {
          ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
          if (r < 0 && errno == EAGAIN) break;
          if (r <= 0) {
            note_error("%s", r == 0 ? "the server closed the connection" : strerror(errno));
            conn_close(c, 1);
            break;
          }
          parse_frames(c, rbuf, (int)r, t, &replies);
          if (c->state != C_OPEN || (size_t)r < sizeof rbuf) break;
        }
      }
      if (opt.mode == MODE_ECHO && replies > 0 && c->state == C_OPEN && window_end != 0) send_messages(c, replies, t);
    }
    if (opt.mode == MODE_PUBLISH && connected_at != 0) pump(t);
    if (connected_at == 0) connect_more();
  }

  if (opt.mode == MODE_IDLE) return 0;
  if (t_window1 == 0) {
    fprintf(stderr, "ws-load: stopped before the measured window ended: %s\n", first_error[0] ? first_error : "signal");
    return 1;
  }
  double window_us = (double)(t_window1 - t_window0) / 1000;
  double window_s = window_us / 1e6;
  double pct = own_cpu / window_us * 100;
  double user_share = have_ticks && tick_user + tick_sys > 0 ? tick_user / (tick_user + tick_sys) : -1;
  printf("{\"mode\":\"%s\",\"conns\":%d,\"depth\":%d,\"size\":%d,\"deflate\":%s,", opt.mode == MODE_ECHO ? "echo" : "publish",
         opt.conns, opt.depth, opt.size, opt.deflate ? "true" : "false");
  printf("\"msgsPerSec\":%.1f,\"messages\":%llu,\"windowS\":%.4f,", (double)msgs / window_s, (unsigned long long)msgs,
         window_s);
  printf("\"rttUs\":{\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f,\"p999\":%.2f,\"max\":%.2f},", hist_pct(0.5) / 1000,
         hist_pct(0.9) / 1000, hist_pct(0.99) / 1000, hist_pct(0.999) / 1000, (double)hist_max / 1000);
  if (srv_cpu_us >= 0 && msgs > 0) {
    printf("\"serverCpuUsPerMsg\":%.4f,", srv_cpu_us / (double)msgs);
    if (user_share >= 0)
      printf("\"serverUserUsPerMsg\":%.4f,\"serverSysUsPerMsg\":%.4f,", srv_cpu_us * user_share / (double)msgs,
             srv_cpu_us * (1 - user_share) / (double)msgs);
    else printf("\"serverUserUsPerMsg\":null,\"serverSysUsPerMsg\":null,");
    printf("\"serverCpuPct\":%.1f,", srv_cpu_us / window_us * 100);
  } else printf("\"serverCpuUsPerMsg\":null,\"serverUserUsPerMsg\":null,\"serverSysUsPerMsg\":null,");
  printf("\"loadgenCpuPct\":%.1f,\"loadgenSaturated\":%s,", pct, pct > 90 ? "true" : "false");
  if (have_machine && srv_cpu_us >= 0)
    printf("\"otherCpuPct\":%.1f,\"stealPct\":%.1f,", (busy - srv_cpu_us - own_cpu) / window_us * 100, steal / window_us * 100);
  else printf("\"otherCpuPct\":null,\"stealPct\":null,");
  printf("\"protocolErrors\":%llu,\"unexpectedCloses\":%llu,\"compressedReplies\":%llu,", (unsigned long long)protocol_errors,
         (unsigned long long)unexpected_closes, (unsigned long long)compressed_replies);
  int deflate_ok = 0;
  for (int i = 0; i < opt.conns; i++) deflate_ok += conns[i].deflate_ok;
  printf("\"deflateAccepted\":%d", deflate_ok);
  if (opt.mode == MODE_PUBLISH) {
    // A subscriber "kept up" if it received every publish of the window but the lag bound's worth.
    uint64_t pubs = msgs > 0 ? conns[0].received : 0;
    int kept = 0;
    for (int i = 0; i < opt.conns; i++)
      if (conns[i].state == C_OPEN && conns[i].received + (uint64_t)opt.lag >= pubs) kept++;
    printf(",\"broadcastsPerSec\":%.1f,\"recipientsMin\":%d,\"recipientsMax\":%d,\"lagLimitedPct\":%.1f",
           (double)pubs / window_s, kept, opt.conns, pumps > 0 ? (double)lag_limited / (double)pumps * 100 : 0.0);
  }
  printf(",\"firstError\":");
  json_str(first_error);
  printf("}\n");
  return 0;
}
