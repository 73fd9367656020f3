// Linux constants used by bunpoll. Values are the generic Linux ABI values, identical on
// x86-64 and aarch64 (the two architectures bunpoll supports). One place, no magic numbers
// elsewhere.

export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_STREAM = 1;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;

export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_ERROR = 4;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_LINGER = 13;
export const SO_REUSEPORT = 15;
export const IPPROTO_TCP = 6;
export const TCP_NODELAY = 1;
export const IPPROTO_IPV6 = 41;
export const IPV6_V6ONLY = 26;

export const SHUT_RD = 0;
export const SHUT_WR = 1;
export const SHUT_RDWR = 2;

/** send(2) flag: return EPIPE instead of raising SIGPIPE when the peer is gone. */
export const MSG_NOSIGNAL = 0x4000;
/** send(2) flag: more data follows (a file after its header): the kernel does not push a short segment yet. */
export const MSG_MORE = 0x8000;

export const O_RDONLY = 0;
export const O_CLOEXEC = 0o2000000;
/** open(2): never block (a FIFO opens at once instead of waiting for a writer). */
export const O_NONBLOCK = 0o4000;
/** openat2(2): its syscall number (the same on x86-64 and aarch64), AT_FDCWD, and RESOLVE_NO_SYMLINKS (ELOOP on any link). */
export const SYS_openat2 = 437;
export const AT_FDCWD = -100;
export const RESOLVE_NO_SYMLINKS = 0x04;
/** st_mode file type bits and the types we tell apart. */
export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;

export const EPOLL_CLOEXEC = 0o2000000;
export const EPOLL_CTL_ADD = 1;
export const EPOLL_CTL_DEL = 2;
export const EPOLL_CTL_MOD = 3;
export const EPOLLIN = 0x001;
export const EPOLLOUT = 0x004;
export const EPOLLERR = 0x008;
export const EPOLLHUP = 0x010;
export const EPOLLRDHUP = 0x2000;

export const EFD_NONBLOCK = 0o4000;
export const EFD_CLOEXEC = 0o2000000;

export const RLIMIT_NOFILE = 7;

/** errno numbers (asm-generic/errno-base.h, errno.h). */
export const Errno = {
  EPERM: 1, ENOENT: 2, EINTR: 4, EIO: 5, EBADF: 9, EAGAIN: 11, ENOMEM: 12, EACCES: 13,
  EFAULT: 14, EBUSY: 16, EEXIST: 17, EINVAL: 22, ENFILE: 23, EMFILE: 24, ENOSPC: 28,
  EPIPE: 32, EPROTO: 71, ENOTSOCK: 88, EOPNOTSUPP: 95, EAFNOSUPPORT: 97, EADDRINUSE: 98,
  EADDRNOTAVAIL: 99, ENETDOWN: 100, ENETUNREACH: 101, ECONNABORTED: 103, ECONNRESET: 104,
  ENOBUFS: 105, ENOSYS: 38, ENOTDIR: 20, EISDIR: 21, ELOOP: 40, ENAMETOOLONG: 36, EISCONN: 106, ENOTCONN: 107, ETIMEDOUT: 110, ECONNREFUSED: 111,
  EHOSTUNREACH: 113, EALREADY: 114, EINPROGRESS: 115,
} as const;
export type ErrnoName = keyof typeof Errno;
