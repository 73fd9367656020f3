/*
 * Baseline: a minimal single-threaded C epoll HTTP/1.1 responder, the floor bunpoll's HTTP
 * is measured against. Same loop as c-epoll.c: level-triggered, nonblocking, one shared
 * 64 KiB read buffer, the replies to every complete request of one read gathered and
 * written with one write(2), only the part the kernel refuses queued with EPOLLOUT armed
 * (and reading paused while the queue is large).
 *
 *   cc -O2 -o bench/build/c-http bench/baselines/c-http.c
 *   bench/build/c-http --port P [--host 127.0.0.1]
 *
 * It parses just enough for the benchmarks: a request is everything up to the blank line
 * (a head over 16 KiB: 431 and close); GET /plaintext -> "Hello, World!" as text/plain,
 * GET /json -> {"message":"Hello, World!"} as application/json, other GETs -> 404; any
 * other method, or a request with a body (Content-Length or Transfer-Encoding) -> 400 and
 * close. Keep-alive unless the request says "Connection: close" or is HTTP/1.0; pipelined
 * requests are answered in order. Every reply carries a Date, formatted once per second.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_BUF (64 * 1024)
#define MAX_EVENTS 256
#define MAX_HEAD (16 * 1024)
#define PAUSE_AT (1024 * 1024) /* stop reading when this much output is queued */

typedef struct conn {
  int fd;
  int paused;
  int dead;      /* closed; freed after the current epoll_wait batch */
  int closing;   /* close once the queued output is written */
  struct conn *next_dead;
  uint8_t *out;  /* queued output: bytes [out_off, out_len) */
  size_t out_off, out_len, out_cap;
  uint8_t *in;   /* an incomplete request head carried to the next read */
  size_t in_len, in_cap;
} conn_t;

static int ep;
static uint8_t rbuf[READ_BUF];
static uint8_t *rep; /* replies for one read */
static size_t rep_len, rep_cap;
static struct conn *graveyard;

static char date_line[64]; /* "Date: Fri, 04 Dec 2026 16:00:00 GMT\r\n" */
static size_t date_len;
static time_t date_sec = -1;

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void grow(uint8_t **buf, size_t *cap, size_t need) {
  if (need <= *cap) return;
  size_t c = *cap ? *cap : 4096;
  while (c < need) c *= 2;
  uint8_t *p = realloc(*buf, c);
  if (!p) die("realloc");
  *buf = p;
  *cap = c;
}

static void refresh_date(void) {
  time_t now = time(NULL);
  if (now == date_sec) return;
  date_sec = now;
  struct tm tm;
  gmtime_r(&now, &tm);
  date_len = strftime(date_line, sizeof date_line, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
}

static void set_events(conn_t *c) {
  struct epoll_event ev = {0};
  ev.events = (c->paused ? 0 : EPOLLIN) | (c->out_len > c->out_off ? EPOLLOUT : 0);
  ev.data.ptr = c;
  if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl mod");
}

static void close_conn(conn_t *c) {
  if (c->dead) return;
  c->dead = 1;
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  c->next_dead = graveyard;
  graveyard = c;
}

static void reap(void) {
  while (graveyard) {
    conn_t *c = graveyard;
    graveyard = c->next_dead;
    free(c->out);
    free(c->in);
    free(c);
  }
}

static int flush_out(conn_t *c) {
  while (c->out_off < c->out_len) {
    ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      return -1;
    }
    c->out_off += (size_t)n;
  }
  if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
  return 0;
}

static int send_bytes(conn_t *c, const uint8_t *p, size_t n) {
  int had_queue = c->out_len > c->out_off;
  if (!had_queue) {
    while (n > 0) {
      ssize_t w = write(c->fd, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) break;
        return -1;
      }
      p += w;
      n -= (size_t)w;
    }
    if (n == 0) return 0;
  }
  grow(&c->out, &c->out_cap, c->out_len + n);
  memcpy(c->out + c->out_len, p, n);
  c->out_len += n;
  int was_paused = c->paused;
  if (c->out_len - c->out_off >= PAUSE_AT) c->paused = 1;
  if (!had_queue || c->paused != was_paused) set_events(c);
  return 0;
}

static void put(const char *s, size_t n) {
  grow(&rep, &rep_cap, rep_len + n);
  memcpy(rep + rep_len, s, n);
  rep_len += n;
}
#define PUT(lit) put(lit, sizeof lit - 1)

static void reply(const char *status, const char *type, const char *body, size_t body_len, int close_after) {
  char cl[64];
  PUT("HTTP/1.1 ");
  put(status, strlen(status));
  PUT("\r\nServer: c-http\r\nContent-Type: ");
  put(type, strlen(type));
  put(cl, (size_t)snprintf(cl, sizeof cl, "\r\nContent-Length: %zu\r\n", body_len));
  put(date_line, date_len);
  if (close_after) PUT("Connection: close\r\n");
  PUT("\r\n");
  put(body, body_len);
}

/* Case-insensitive search for a header line "\r\nNAME:" in head[0, n). Returns the value
 * start (after optional spaces) or NULL. */
static const char *find_header(const char *head, size_t n, const char *name) {
  size_t nl = strlen(name);
  for (const char *p = head; (p = memmem(p, n - (size_t)(p - head), "\r\n", 2)) != NULL; p += 2) {
    size_t left = n - (size_t)(p + 2 - head);
    if (left > nl && strncasecmp(p + 2, name, nl) == 0 && p[2 + nl] == ':') {
      const char *v = p + 3 + nl;
      while (v < head + n && (*v == ' ' || *v == '\t')) v++;
      return v;
    }
  }
  return NULL;
}

/* Answer every complete request in p[0, n); return how many bytes were consumed, or
 * (size_t)-1 once a reply that closes the connection has been gathered. */
static size_t parse_requests(const uint8_t *p, size_t n) {
  static const char hello[] = "Hello, World!";
  size_t off = 0;
  while (off < n) {
    const char *head = (const char *)p + off;
    const char *end = memmem(head, n - off, "\r\n\r\n", 4);
    if (end == NULL) {
      if (n - off > MAX_HEAD) {
        reply("431 Request Header Fields Too Large", "text/plain", "", 0, 1);
        return (size_t)-1;
      }
      break;
    }
    size_t hl = (size_t)(end - head) + 2; /* through the last header's CRLF */
    const char *line_end = memmem(head, hl, "\r\n", 2);
    size_t ll = (size_t)(line_end - head);
    int http10 = ll >= 8 && memcmp(line_end - 8, "HTTP/1.0", 8) == 0;
    const char *conn_h = find_header(head, hl, "connection");
    int close_after = http10 ? !(conn_h && strncasecmp(conn_h, "keep-alive", 10) == 0)
                             : (conn_h && strncasecmp(conn_h, "close", 5) == 0);
    if (ll < 4 || memcmp(head, "GET ", 4) != 0 || find_header(head, hl, "content-length") ||
        find_header(head, hl, "transfer-encoding")) {
      reply("400 Bad Request", "text/plain", "", 0, 1);
      return (size_t)-1;
    }
    const char *target = head + 4;
    const char *sp = memchr(target, ' ', ll - 4);
    size_t tl = sp ? (size_t)(sp - target) : 0;
    if (tl == 10 && memcmp(target, "/plaintext", 10) == 0) {
      reply("200 OK", "text/plain", hello, sizeof hello - 1, close_after);
    } else if (tl == 5 && memcmp(target, "/json", 5) == 0) {
      char body[64];
      int bl = snprintf(body, sizeof body, "{\"message\":\"%s\"}", hello);
      reply("200 OK", "application/json", body, (size_t)bl, close_after);
    } else {
      reply("404 Not Found", "text/plain", "not found\n", 10, close_after);
    }
    off += hl + 2;
    if (close_after) return (size_t)-1;
  }
  return off;
}

/* Handle n freshly read bytes in rbuf. Returns -1 if the connection is to close now. */
static int on_read(conn_t *c, size_t n) {
  rep_len = 0;
  refresh_date();
  size_t used;
  if (c->in_len == 0) {
    used = parse_requests(rbuf, n);
    if (used != (size_t)-1 && used < n) {
      grow(&c->in, &c->in_cap, n - used);
      memcpy(c->in, rbuf + used, n - used);
      c->in_len = n - used;
    }
  } else {
    grow(&c->in, &c->in_cap, c->in_len + n);
    memcpy(c->in + c->in_len, rbuf, n);
    c->in_len += n;
    used = parse_requests(c->in, c->in_len);
    if (used != (size_t)-1) {
      memmove(c->in, c->in + used, c->in_len - used);
      c->in_len -= used;
    }
  }
  if (rep_len && send_bytes(c, rep, rep_len) < 0) return -1;
  if (used == (size_t)-1) {
    /* Nothing after a closing request is read; close once the reply is out. */
    if (c->out_len == 0) return -1;
    c->closing = 1;
    c->paused = 1;
    set_events(c);
  }
  return 0;
}

static void accept_all(int lfd) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN) return;
      perror("accept4");
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conn_t *c = calloc(1, sizeof *c);
    if (!c) die("calloc");
    c->fd = fd;
    struct epoll_event ev = {0};
    ev.events = EPOLLIN;
    ev.data.ptr = c;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl add");
  }
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--host")) host = argv[i + 1];
    else { fprintf(stderr, "c-http: unknown argument %s\n", argv[i]); return 2; }
  }
  if (argc % 2 == 0 || port <= 0 || port > 65535) {
    fprintf(stderr, "usage: c-http --port P [--host 127.0.0.1]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd < 0) die("socket");
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = {0};
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) { fprintf(stderr, "c-http: bad host %s\n", host); return 2; }
  if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
  if (listen(lfd, SOMAXCONN) < 0) die("listen");

  ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  struct epoll_event lev = {0};
  lev.events = EPOLLIN;
  lev.data.ptr = NULL; /* NULL marks the listening socket */
  if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0) die("epoll_ctl listen");
  fprintf(stderr, "c-http: on %s:%d pid %d\n", host, port, (int)getpid());

  struct epoll_event evs[MAX_EVENTS];
  for (;;) {
    int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; i++) {
      conn_t *c = evs[i].data.ptr;
      if (c == NULL) {
        accept_all(lfd);
        continue;
      }
      if (c->dead) continue;
      uint32_t e = evs[i].events;
      if (e & EPOLLOUT) {
        if (flush_out(c) < 0) { close_conn(c); continue; }
        if (c->out_len == 0) {
          if (c->closing) { close_conn(c); continue; }
          c->paused = 0;
          set_events(c);
        }
      }
      if (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        if (c->paused) {
          if (e & (EPOLLHUP | EPOLLERR)) close_conn(c);
          continue;
        }
        ssize_t r = read(c->fd, rbuf, READ_BUF);
        if (r > 0) {
          if (on_read(c, (size_t)r) < 0) close_conn(c);
        } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
          close_conn(c);
        }
      }
    }
    reap();
  }
}
