/*
 * Open-loop load generator for the framed protocol: a fixed rate of 64 B ECHO frames over
 * N connections, latency measured from each request's *scheduled* send time.
 *
 * Why C: a JS load generator's own GC pauses and timer jitter would land in the p99 it
 * measures. Why open loop: a closed-loop client that waits for each reply before sending
 * the next one stops sending while the server stalls, so the stall delays one request
 * instead of all those that should have been sent meanwhile (coordinated omission).
 *
 * Schedule: message j (j = 0, 1, ...) is due at start + j / rate on connection j % conns,
 * whatever happened to earlier messages: sends are never held back by missing replies
 * (at the rates used here one message is outstanding per connection almost always, but a
 * server stall does not pause the schedule). A send that could not leave on time (the
 * generator was descheduled, or the socket buffer was full) still counts from its due time.
 * Replies are matched FIFO per connection (the server answers in order).
 *
 * Timing: the generator spins on epoll_wait(0) (--sleep: epoll_pwait2 up to the next due
 * time instead), so a reply is timestamped when it arrives, not after a wake-up of the
 * generator's own. Pin it to a core of its own (--cpu, default 1).
 *
 * Percentiles come from a log-linear histogram (HDR-style: 256 linear sub-buckets per power
 * of two, <= 0.4% error) of latencies in ns.
 *
 *   cc -O2 -o bench/build/c-openloop bench/baselines/c-openloop.c
 *   bench/build/c-openloop --port P --rate 20000 [--conns 50] [--size 64] [--duration 10]
 *       [--warmup 2] [--interval 60] [--server-pid PID] [--cpu 1] [--sleep] [--rt]
 *
 * Output: one JSON object on stdout at the end; with --interval S, also one JSON line per
 * S seconds of the measured window ({"interval": k, ...}) as it ends. Exit status 0 when
 * every connection stayed open and every reply arrived, 1 otherwise (the JSON says what).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define ECHO 5
#define ECHO_REPLY 6
#define RING 8192 /* scheduled times of outstanding requests per connection (power of 2): a stall of 10 s at 40k/s over 50 connections */
#define INBUF 65536

/* --- histogram ------------------------------------------------------------------------ */
#define SUB_BITS 9
#define SUB (1 << SUB_BITS)
#define HALF (SUB / 2)
#define NBUCKETS (SUB + 48 * HALF)
typedef struct {
  uint64_t counts[NBUCKETS];
  uint64_t total, max, min;
  double sum;
} hist_t;

/* Values below SUB have a bucket each; above, each power of two has HALF buckets. */
static int bucket_of(uint64_t v) {
  if (v < SUB) return (int)v;
  int m = 63 - __builtin_clzll(v); /* m >= SUB_BITS */
  int shift = m - SUB_BITS + 1;
  int idx = SUB + (shift - 1) * HALF + (int)((v >> shift) - HALF);
  return idx < NBUCKETS ? idx : NBUCKETS - 1;
}

/* The highest value a bucket holds, for percentile reporting. */
static uint64_t bucket_high(int idx) {
  if (idx < SUB) return (uint64_t)idx;
  int shift = (idx - SUB) / HALF + 1;
  uint64_t top = (uint64_t)((idx - SUB) % HALF + HALF);
  return ((top + 1) << shift) - 1;
}

static void hist_record(hist_t *h, uint64_t v) {
  h->counts[bucket_of(v)]++;
  h->total++;
  h->sum += (double)v;
  if (v > h->max) h->max = v;
  if (h->total == 1 || v < h->min) h->min = v;
}

static double hist_pct(const hist_t *h, double p) {
  if (h->total == 0) return 0;
  uint64_t want = (uint64_t)((p / 100.0) * (double)h->total + 0.5);
  if (want < 1) want = 1;
  if (want > h->total) want = h->total;
  uint64_t seen = 0;
  for (int i = 0; i < NBUCKETS; i++) {
    seen += h->counts[i];
    if (seen >= want) {
      uint64_t hi = bucket_high(i);
      return (double)(hi < h->max ? hi : h->max);
    }
  }
  return (double)h->max;
}

static void hist_json(FILE *f, const hist_t *h) {
  fprintf(f, "\"count\":%llu,\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f,\"min\":%.1f,\"mean\":%.1f",
          (unsigned long long)h->total, hist_pct(h, 50) / 1e3, hist_pct(h, 90) / 1e3, hist_pct(h, 99) / 1e3,
          hist_pct(h, 99.9) / 1e3, (double)h->max / 1e3, (double)h->min / 1e3,
          h->total ? h->sum / (double)h->total / 1e3 : 0.0);
}

/* --- connections ----------------------------------------------------------------------- */
typedef struct {
  int fd;
  int open;
  uint64_t due[RING]; /* scheduled send times (ns) of requests awaiting replies */
  uint32_t head, tail;
  uint8_t *out; /* bytes not yet accepted by the kernel */
  size_t out_len, out_cap;
  uint8_t in[INBUF];
  size_t in_len;
} conn_t;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int port = 0, nconns = 50, size = 64, use_sleep = 0, cpu = 1, server_pid = 0, rt = 0;
static double rate = 10000, duration = 10, warmup = 2, interval = 0, drain_s = 2;
static const char *host = "127.0.0.1";
static volatile sig_atomic_t stop_flag = 0;
static void on_signal(int s) { (void)s; stop_flag = 1; }

static uint64_t server_cpu_ns(void) {
  if (server_pid <= 0) return 0;
  char path[128];
  snprintf(path, sizeof path, "/proc/%d/task", server_pid);
  DIR *d = opendir(path);
  if (!d) return 0;
  uint64_t total = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char p2[320];
    snprintf(p2, sizeof p2, "/proc/%d/task/%s/schedstat", server_pid, e->d_name);
    FILE *f = fopen(p2, "r");
    if (!f) continue;
    unsigned long long ns = 0;
    if (fscanf(f, "%llu", &ns) == 1) total += ns;
    fclose(f);
  }
  closedir(d);
  return total;
}

static void loadavg(char *buf, size_t n) {
  buf[0] = 0;
  FILE *f = fopen("/proc/loadavg", "r");
  if (!f) return;
  if (fgets(buf, (int)n, f)) buf[strcspn(buf, "\n")] = 0;
  fclose(f);
}

static void die(const char *what) {
  fprintf(stderr, "c-openloop: %s: %s\n", what, strerror(errno));
  exit(2);
}

static void usage(void) {
  fprintf(stderr, "usage: c-openloop --port P --rate MSGS_PER_S [--conns 50] [--size 64] [--duration S] [--warmup S] "
                  "[--interval S] [--drain S] [--server-pid PID] [--cpu N|-1] [--sleep] [--rt] [--host 127.0.0.1]\n");
  exit(2);
}

/* Queue bytes behind what the kernel refused earlier. */
static void out_append(conn_t *c, const uint8_t *p, size_t n) {
  if (c->out_len + n > c->out_cap) {
    c->out_cap = (c->out_len + n) * 2;
    c->out = realloc(c->out, c->out_cap);
    if (!c->out) die("realloc");
  }
  memcpy(c->out + c->out_len, p, n);
  c->out_len += n;
}

/* Sends queued bytes; returns -1 when the connection failed. */
static int out_flush(conn_t *c) {
  size_t off = 0;
  while (off < c->out_len) {
    ssize_t w = send(c->fd, c->out + off, c->out_len - off, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN || errno == EINTR) break;
      return -1;
    }
    off += (size_t)w;
  }
  memmove(c->out, c->out + off, c->out_len - off);
  c->out_len -= off;
  return 0;
}

static int set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static hist_t hall, hint; /* the whole measured window; the current interval */

static void print_interval(int k, double secs, uint64_t sent) {
  printf("{\"interval\":%d,\"seconds\":%.3f,\"sent\":%llu,", k, secs, (unsigned long long)sent);
  hist_json(stdout, &hint);
  printf("}\n");
  fflush(stdout);
  memset(&hint, 0, sizeof hint);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--sleep")) { use_sleep = 1; continue; }
    if (!strcmp(a, "--rt")) { rt = 1; continue; }
    if (!v) usage();
    if (!strcmp(a, "--port")) port = atoi(v);
    else if (!strcmp(a, "--host")) host = v;
    else if (!strcmp(a, "--rate")) rate = atof(v);
    else if (!strcmp(a, "--conns")) nconns = atoi(v);
    else if (!strcmp(a, "--size")) size = atoi(v);
    else if (!strcmp(a, "--duration")) duration = atof(v);
    else if (!strcmp(a, "--warmup")) warmup = atof(v);
    else if (!strcmp(a, "--interval")) interval = atof(v);
    else if (!strcmp(a, "--drain")) drain_s = atof(v);
    else if (!strcmp(a, "--server-pid")) server_pid = atoi(v);
    else if (!strcmp(a, "--cpu")) cpu = atoi(v);
    else usage();
    i++;
  }
  if (port <= 0 || rate <= 0 || nconns <= 0 || size < 0 || size > 65535 || duration <= 0 || warmup < 0) usage();
  if (cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) die("sched_setaffinity");
  }
  if (rt) {
    /* Real-time priority: on a shared machine, other processes on this core would otherwise
       deschedule the generator for whole time slices (ms), which lands in every server's p99. */
    struct sched_param sp = {.sched_priority = 10};
    if (sched_setscheduler(0, SCHED_FIFO, &sp) != 0) die("sched_setscheduler(SCHED_FIFO)");
  }
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGPIPE, SIG_IGN);

  int ep = epoll_create1(0);
  if (ep < 0) die("epoll_create1");
  conn_t *conns = calloc((size_t)nconns, sizeof(conn_t));
  if (!conns) die("calloc");
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    fprintf(stderr, "c-openloop: bad host %s\n", host);
    return 2;
  }
  for (int i = 0; i < nconns; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (set_nonblock(fd) != 0) die("fcntl");
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl");
    conns[i].fd = fd;
    conns[i].open = 1;
  }

  /* One request frame, the same bytes every time. */
  size_t flen = 4 + (size_t)size;
  uint8_t *frame = malloc(flen);
  frame[0] = 0; frame[1] = ECHO; frame[2] = (uint8_t)(size >> 8); frame[3] = (uint8_t)size;
  for (int i = 0; i < size; i++) frame[4 + i] = (uint8_t)('a' + i % 26);

  char load_before[128], load_after[128];
  loadavg(load_before, sizeof load_before);
  const double period = 1e9 / rate;
  const uint64_t t0 = now_ns();
  const uint64_t measure_start = t0 + (uint64_t)(warmup * 1e9);
  const uint64_t send_end = measure_start + (uint64_t)(duration * 1e9);
  const uint64_t interval_ns = interval > 0 ? (uint64_t)(interval * 1e9) : 0;
  uint64_t next_interval = interval_ns ? measure_start + interval_ns : UINT64_MAX;
  int interval_k = 0;
  uint64_t j = 0, sent = 0, sent_measured = 0, received = 0, bad = 0, overflow = 0;
  uint64_t max_send_lag = 0, sent_interval = 0;
  uint64_t cpu_start = 0, cpu_end = 0;
  int measuring = 0, closed = 0;
  uint64_t deadline = UINT64_MAX; /* end of the drain after the last send */
  struct epoll_event evs[256];

  for (;;) {
    uint64_t now = now_ns();
    if (!measuring && now >= measure_start) {
      measuring = 1;
      cpu_start = server_cpu_ns();
    }
    /* Send everything that is due (open loop: regardless of outstanding replies). */
    while (deadline == UINT64_MAX) {
      uint64_t due = t0 + (uint64_t)((double)j * period);
      if (due > now) break;
      if (due >= send_end) {
        cpu_end = server_cpu_ns();
        deadline = now + (uint64_t)(drain_s * 1e9);
        break;
      }
      conn_t *c = &conns[j % (uint64_t)nconns];
      j++;
      if (!c->open) continue;
      if (c->tail - c->head >= RING) { overflow++; continue; } /* server far behind: not sent, counted */
      c->due[c->tail++ & (RING - 1)] = due;
      if (now - due > max_send_lag && due >= measure_start) max_send_lag = now - due;
      out_append(c, frame, flen);
      if (out_flush(c) != 0) { c->open = 0; closed++; }
      sent++;
      if (due >= measure_start) { sent_measured++; sent_interval++; }
    }
    if (interval_ns && now >= next_interval && deadline == UINT64_MAX) {
      print_interval(++interval_k, interval, sent_interval);
      sent_interval = 0;
      next_interval += interval_ns;
    }
    /* Drained: every reply in, or the drain deadline passed. */
    if (deadline != UINT64_MAX) {
      uint64_t outstanding = 0;
      for (int i = 0; i < nconns; i++) if (conns[i].open) outstanding += conns[i].tail - conns[i].head;
      if (outstanding == 0 || now >= deadline) break;
    }
    if (stop_flag) break;

    int timeout_ms = 0;
    int n;
    if (use_sleep) {
      uint64_t due = deadline == UINT64_MAX ? t0 + (uint64_t)((double)j * period) : now + 1000000;
      struct timespec ts = {0, 0};
      if (due > now) { ts.tv_sec = (time_t)((due - now) / 1000000000ull); ts.tv_nsec = (long)((due - now) % 1000000000ull); }
      n = (int)syscall(SYS_epoll_pwait2, ep, evs, 256, &ts, NULL, 0);
    } else {
      n = epoll_wait(ep, evs, 256, timeout_ms);
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    uint64_t t = n > 0 ? now_ns() : 0;
    for (int e = 0; e < n; e++) {
      conn_t *c = &conns[evs[e].data.u32];
      if (!c->open) continue;
      if (c->out_len > 0 && out_flush(c) != 0) { c->open = 0; closed++; epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL); continue; }
      ssize_t r = recv(c->fd, c->in + c->in_len, INBUF - c->in_len, 0);
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
        c->open = 0;
        closed++;
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        continue;
      }
      if (r < 0) continue;
      c->in_len += (size_t)r;
      size_t off = 0;
      while (c->in_len - off >= 4) {
        unsigned type = ((unsigned)c->in[off] << 8) | c->in[off + 1];
        size_t len = ((size_t)c->in[off + 2] << 8) | c->in[off + 3];
        if (c->in_len - off < 4 + len) break;
        off += 4 + len;
        if (type != ECHO_REPLY || len != (size_t)size || c->head == c->tail) { bad++; continue; }
        uint64_t due = c->due[c->head++ & (RING - 1)];
        received++;
        if (due >= measure_start && due < send_end) {
          uint64_t lat = t > due ? t - due : 0;
          hist_record(&hall, lat);
          if (interval_ns) hist_record(&hint, lat);
        }
      }
      memmove(c->in, c->in + off, c->in_len - off);
      c->in_len -= off;
    }
  }
  if (cpu_end == 0) cpu_end = server_cpu_ns();
  if (interval_ns && hint.total > 0) print_interval(++interval_k, (double)(now_ns() - (next_interval - interval_ns)) / 1e9, sent_interval);
  loadavg(load_after, sizeof load_after);

  uint64_t lost = 0;
  for (int i = 0; i < nconns; i++) lost += conns[i].tail - conns[i].head;
  double cpu_us_per_msg = server_pid > 0 && sent_measured > 0 ? (double)(cpu_end - cpu_start) / 1e3 / (double)sent_measured : -1;
  printf("{\"rate\":%.0f,\"conns\":%d,\"size\":%d,\"warmup\":%.3f,\"duration\":%.3f,\"sent\":%llu,\"sentMeasured\":%llu,"
         "\"received\":%llu,\"lost\":%llu,\"protocolErrors\":%llu,\"notSent\":%llu,\"closedConns\":%d,\"maxSendLagUs\":%.1f,",
         rate, nconns, size, warmup, duration, (unsigned long long)sent, (unsigned long long)sent_measured,
         (unsigned long long)received, (unsigned long long)lost, (unsigned long long)bad, (unsigned long long)overflow, closed,
         (double)max_send_lag / 1e3);
  printf("\"serverCpuUs\":%.0f,\"cpuUsPerMsg\":%.3f,\"loadavgBefore\":\"%s\",\"loadavgAfter\":\"%s\",\"spin\":%s,\"rt\":%s,",
         server_pid > 0 ? (double)(cpu_end - cpu_start) / 1e3 : -1.0, cpu_us_per_msg, load_before, load_after, use_sleep ? "false" : "true", rt ? "true" : "false");
  hist_json(stdout, &hall);
  printf("}\n");
  return closed == 0 && lost == 0 && bad == 0 && overflow == 0 && !stop_flag ? 0 : 1;
}
