# A TLS client over Python's ssl.SSLObject (memory BIOs), so the test controls every wire
# byte: `split` sends an encrypted message one byte at a time and expects the echo;
# `vanish` sends half of a record and closes the socket; `coalesce` sends 16 records in one
# TCP send to the echo listener and counts the records the 16 echoes come back in.
#   python3 records.py PORT CAFILE split|vanish|coalesce
import socket, ssl, sys, time

port, cafile, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=cafile)
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
sock = socket.create_connection(("127.0.0.1", port))
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

def pump_out():
    data = outgoing.read()
    if data:
        sock.sendall(data)

while True:
    try:
        tls.do_handshake()
        pump_out()
        break
    except ssl.SSLWantReadError:
        pump_out()
        chunk = sock.recv(65536)
        if not chunk:
            sys.exit("server closed during the handshake")
        incoming.write(chunk)

if mode == "coalesce":
    # Take in what the server sent after its handshake (TLS 1.3 session tickets) first.
    sock.settimeout(0.3)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            incoming.write(chunk)
    except socket.timeout:
        pass
    try:
        tls.read(65536)
    except ssl.SSLWantReadError:
        pass
    parts = [bytes([65 + i]) * 64 for i in range(16)]
    for p in parts:
        tls.write(p)
    sock.sendall(outgoing.read())  # 16 records, one send
    want = b"".join(parts)
    got, wire = b"", b""
    sock.settimeout(10)
    while len(got) < len(want):
        chunk = sock.recv(65536)
        if not chunk:
            sys.exit(f"server closed after {len(got)} bytes")
        wire += chunk
        incoming.write(chunk)
        try:
            while True:
                got += tls.read(65536)
        except ssl.SSLWantReadError:
            pass
    assert got == want, "echo differs"
    records, at = 0, 0
    while at + 5 <= len(wire):
        records += 1
        at += 5 + int.from_bytes(wire[at + 3:at + 5], "big")
    print("records", records)
    sys.exit(0)

message = b"records may split anywhere " * 40
tls.write(message)
wire = outgoing.read()
if mode == "split":
    for i in range(len(wire)):
        sock.send(wire[i:i + 1])
        if i % 97 == 0:
            time.sleep(0.001)
    got = b""
    sock.settimeout(10)
    while len(got) < len(message):
        chunk = sock.recv(65536)
        if not chunk:
            sys.exit(f"server closed after {len(got)} bytes")
        incoming.write(chunk)
        try:
            while True:
                got += tls.read(65536)
        except ssl.SSLWantReadError:
            pass
    assert got == message, "echo differs"
    print("split ok", len(wire), "wire bytes")
else:
    # Read what the server sent (TLS 1.3 session tickets) so that closing sends FIN, not RST.
    sock.settimeout(0.2)
    try:
        while sock.recv(65536):
            pass
    except socket.timeout:
        pass
    sock.sendall(wire[: len(wire) // 2])
    time.sleep(0.1)
    sock.shutdown(socket.SHUT_WR)
    time.sleep(0.2)
    sock.close()
    print("vanished after", len(wire) // 2, "of", len(wire), "bytes")
