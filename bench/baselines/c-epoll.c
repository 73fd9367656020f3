/*
 * Baseline: a minimal single-threaded C epoll server, the floor bunpoll is measured
 * against. Level-triggered, nonblocking, one shared read buffer; replies are written at
 * once and only the part the kernel refuses is queued, with EPOLLOUT armed until the
 * queue drains (and reading paused while the queue is large, so a peer that never reads
 * cannot grow it without bound).
 *
 *   cc -O2 -o bench/build/c-epoll bench/baselines/c-epoll.c
 *   bench/build/c-epoll --port P [--host 127.0.0.1] [--protocol echo|framed]
 *
 * Framed protocol: u16 type, u16 length (big-endian), body. ECHO 5 -> ECHO_REPLY 6 and
 * PING 3 -> PONG 4 with the same body; HELLO 1 -> WELCOME 2 (u32 id, u16 1); BROADCAST 7
 * (body B) -> every other connection gets BROADCAST_MSG 8 (u32 from_id, B), the sender
 * BROADCAST_ACK 9 (u32 recipients); any other type -> 0xFFFF, body u16 1 "unknown message
 * type". Every connection is a client from accept on (ids from 1), as in bunpoll. The
 * BROADCAST_MSG frames of one read are gathered and written once to each recipient, the
 * same batching bunpoll's per-turn write queue gives.
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
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_BUF (64 * 1024)
#define MAX_EVENTS 256
#define PAUSE_AT (1024 * 1024) /* stop reading when this much output is queued */

typedef struct conn {
  int fd;
  int paused;
  int dead;     /* closed; freed after the current epoll_wait batch */
  uint32_t id;  /* client id, from 1 */
  size_t slot;  /* index in conns[] */
  struct conn *next_dead;
  /* queued output: bytes [out_off, out_len) of out */
  uint8_t *out;
  size_t out_off, out_len, out_cap;
  /* framed: an incomplete frame carried to the next read */
  uint8_t *in;
  size_t in_len, in_cap;
} conn_t;

static int framed;
static int ep;
static uint8_t rbuf[READ_BUF];
/* replies for one read, gathered so one read costs at most one write */
static uint8_t *rep;
static size_t rep_len, rep_cap;
/* BROADCAST_MSG frames gathered during one read, sent to every other connection */
static uint8_t *bc;
static size_t bc_len, bc_cap;
/* every open connection (the broadcast registry), and closed ones awaiting free() */
static struct conn **conns;
static size_t n_conns, conns_cap;
static struct conn *graveyard;
static uint32_t next_id = 1;

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

static void set_events(conn_t *c) {
  struct epoll_event ev = {0};
  ev.events = (c->paused ? 0 : EPOLLIN) | (c->out_len > c->out_off ? EPOLLOUT : 0);
  ev.data.ptr = c;
  if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl mod");
}

/* Close at once, free later: the current epoll_wait batch (or the broadcast loop) may
 * still hold a pointer to c; dead connections are skipped until reap(). */
static void close_conn(conn_t *c) {
  if (c->dead) return;
  c->dead = 1;
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  conn_t *last = conns[--n_conns];
  conns[c->slot] = last;
  last->slot = c->slot;
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

/* Write what is queued. Returns -1 if the connection died. */
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

/* Send p[0, n): straight to the kernel if nothing is queued, else (or for the rest) queue. */
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

/* Append a frame to buf: header, optional u32 (has_u32), then body[0, len). */
static void put_frame_to(uint8_t **buf, size_t *blen, size_t *bcap, uint16_t type, int has_u32,
                         uint32_t u32, const uint8_t *body, size_t len) {
  size_t blen4 = len + (has_u32 ? 4 : 0);
  grow(buf, bcap, *blen + 4 + blen4);
  uint8_t *h = *buf + *blen;
  h[0] = type >> 8;
  h[1] = type & 0xff;
  h[2] = blen4 >> 8;
  h[3] = blen4 & 0xff;
  h += 4;
  if (has_u32) {
    h[0] = u32 >> 24;
    h[1] = (u32 >> 16) & 0xff;
    h[2] = (u32 >> 8) & 0xff;
    h[3] = u32 & 0xff;
    h += 4;
  }
  if (len) memcpy(h, body, len);
  *blen += 4 + blen4;
}

static void put_frame(uint16_t type, const uint8_t *body, size_t len) {
  put_frame_to(&rep, &rep_len, &rep_cap, type, 0, 0, body, len);
}

/* Answer every complete frame in p[0, n) from c; return how many bytes were consumed. */
static size_t parse_frames(conn_t *c, const uint8_t *p, size_t n) {
  static const uint8_t unknown[] = "\0\1unknown message type";
  static const uint8_t too_large[] = "\0\4frame too large";
  static const uint8_t version[] = {0, 1};
  size_t off = 0;
  while (n - off >= 4) {
    uint16_t type = (uint16_t)(p[off] << 8 | p[off + 1]);
    size_t len = (size_t)(p[off + 2] << 8 | p[off + 3]);
    if (n - off - 4 < len) break;
    const uint8_t *body = p + off + 4;
    if (type == 0x0005) put_frame(0x0006, body, len);
    else if (type == 0x0003) put_frame(0x0004, body, len);
    else if (type == 0x0001) put_frame_to(&rep, &rep_len, &rep_cap, 0x0002, 1, c->id, version, 2);
    else if (type == 0x0007) {
      if (len > 0xFFFF - 4) put_frame(0xFFFF, too_large, sizeof too_large - 1);
      else {
        put_frame_to(&bc, &bc_len, &bc_cap, 0x0008, 1, c->id, body, len);
        put_frame_to(&rep, &rep_len, &rep_cap, 0x0009, 1, (uint32_t)(n_conns - 1), NULL, 0);
      }
    } else put_frame(0xFFFF, unknown, sizeof unknown - 1);
    off += 4 + len;
  }
  return off;
}

/* Handle n freshly read bytes in rbuf. Returns -1 if the connection died. */
static int on_read(conn_t *c, size_t n) {
  if (!framed) return send_bytes(c, rbuf, n);
  rep_len = 0;
  bc_len = 0;
  if (c->in_len == 0) {
    size_t used = parse_frames(c, rbuf, n);
    if (used < n) {
      grow(&c->in, &c->in_cap, n - used);
      memcpy(c->in, rbuf + used, n - used);
      c->in_len = n - used;
    }
  } else {
    /* A frame was split: append and parse from the connection's own buffer. */
    grow(&c->in, &c->in_cap, c->in_len + n);
    memcpy(c->in + c->in_len, rbuf, n);
    c->in_len += n;
    size_t used = parse_frames(c, c->in, c->in_len);
    memmove(c->in, c->in + used, c->in_len - used);
    c->in_len -= used;
  }
  if (bc_len) {
    /* Backwards: close_conn() moves the last entry into the freed slot, already visited. */
    for (size_t i = n_conns; i-- > 0;) {
      conn_t *r = conns[i];
      if (r != c && send_bytes(r, bc, bc_len) < 0) close_conn(r);
    }
  }
  return rep_len ? send_bytes(c, rep, rep_len) : 0;
}

static void accept_all(int lfd) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN) return;
      /* EMFILE etc.: report and go on; the pending connection stays queued. */
      perror("accept4");
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conn_t *c = calloc(1, sizeof *c);
    if (!c) die("calloc");
    c->fd = fd;
    c->id = next_id++;
    if (n_conns == conns_cap) {
      conns_cap = conns_cap ? conns_cap * 2 : 1024;
      conns = realloc(conns, conns_cap * sizeof *conns);
      if (!conns) die("realloc");
    }
    c->slot = n_conns;
    conns[n_conns++] = c;
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
    else if (!strcmp(argv[i], "--protocol")) {
      if (!strcmp(argv[i + 1], "framed")) framed = 1;
      else if (strcmp(argv[i + 1], "echo")) { fprintf(stderr, "c-epoll: unknown protocol %s\n", argv[i + 1]); return 2; }
    } else { fprintf(stderr, "c-epoll: unknown argument %s\n", argv[i]); return 2; }
  }
  if (port <= 0 || port > 65535) {
    fprintf(stderr, "usage: c-epoll --port P [--host 127.0.0.1] [--protocol echo|framed]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN); /* a write to a reset peer returns EPIPE instead of killing us */

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd < 0) die("socket");
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = {0};
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) { fprintf(stderr, "c-epoll: bad host %s\n", host); return 2; }
  if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
  if (listen(lfd, SOMAXCONN) < 0) die("listen");

  ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  struct epoll_event lev = {0};
  lev.events = EPOLLIN;
  lev.data.ptr = NULL; /* NULL marks the listening socket */
  if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0) die("epoll_ctl listen");
  fprintf(stderr, "c-epoll: %s on %s:%d pid %d\n", framed ? "framed" : "echo", host, port, (int)getpid());

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
          c->paused = 0;
          set_events(c);
        }
      }
      if (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        if (c->paused) {
          /* HUP/ERR are reported even when not asked for: do not spin on a dead peer. */
          if (e & (EPOLLHUP | EPOLLERR)) close_conn(c);
          continue;
        }
        ssize_t r = read(c->fd, rbuf, READ_BUF);
        if (r > 0) {
          if (on_read(c, (size_t)r) < 0) close_conn(c);
        } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
          close_conn(c); /* EOF or error: a baseline need not flush to a half-closed peer */
        }
      }
    }
    reap();
  }
}
