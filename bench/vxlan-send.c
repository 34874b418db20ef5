/*
 * A light VXLAN sender for bench/mirror.mjs: the frames of a classic pcap file, each behind an
 * 8-byte VXLAN header (flags 0x08, VNI given), sent as UDP datagrams with sendmmsg(2) in batches
 * of 64 and paced to a rate of inner-frame bits (as tcpreplay --mbps counts them), looping over
 * the file for a duration. One syscall per 64 datagrams instead of tcpreplay's one per frame plus
 * the kernel VXLAN device's encapsulation: on a 2-core machine the sender then leaves the CPU to
 * the receiver and the broker.
 *
 *   gcc -O2 -o vxlan-send bench/vxlan-send.c
 *   vxlan-send PCAP DST_IP DST_PORT MBPS SECONDS [VNI] [SRC_IP]
 *   -> "sent N datagrams (B inner bytes) in S seconds"
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BATCH 64

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: vxlan-send PCAP DST_IP DST_PORT MBPS SECONDS [VNI] [SRC_IP]\n");
    return 2;
  }
  FILE *f = fopen(argv[1], "rb");
  if (!f) {
    perror(argv[1]);
    return 2;
  }
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *file = malloc(size);
  if (fread(file, 1, size, f) != (size_t)size) {
    fprintf(stderr, "%s: short read\n", argv[1]);
    return 2;
  }
  fclose(f);
  uint32_t vni = argc > 6 ? (uint32_t)atoi(argv[6]) : 42;
  /* frames, each copied behind a VXLAN header */
  size_t cap = 1024, n = 0;
  unsigned char **dg = malloc(cap * sizeof *dg);
  size_t *len = malloc(cap * sizeof *len);
  uint64_t fileBytes = 0;
  for (long o = 24; o + 16 <= size;) {
    uint32_t incl;
    memcpy(&incl, file + o + 8, 4); /* little-endian pcap (tcpdump on this host) */
    if (o + 16 + (long)incl > size) break;
    if (n == cap) {
      cap *= 2;
      dg = realloc(dg, cap * sizeof *dg);
      len = realloc(len, cap * sizeof *len);
    }
    dg[n] = malloc(8 + incl);
    unsigned char h[8] = {0x08, 0, 0, 0, (vni >> 16) & 0xff, (vni >> 8) & 0xff, vni & 0xff, 0};
    memcpy(dg[n], h, 8);
    memcpy(dg[n] + 8, file + o + 16, incl);
    len[n] = 8 + incl;
    fileBytes += incl;
    n++;
    o += 16 + incl;
  }
  if (!n) {
    fprintf(stderr, "%s: no frames\n", argv[1]);
    return 2;
  }
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  int sndbuf = 8 << 20;
  setsockopt(s, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  if (argc > 7) {
    struct sockaddr_in src = {.sin_family = AF_INET};
    inet_pton(AF_INET, argv[7], &src.sin_addr);
    if (bind(s, (struct sockaddr *)&src, sizeof src)) {
      perror("bind");
      return 2;
    }
  }
  struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
  inet_pton(AF_INET, argv[2], &dst.sin_addr);
  double bps = atof(argv[4]) * 1e6;
  double secs = atof(argv[5]);
  double avgFrameBits = (double)fileBytes * 8 / n;
  double pps = bps / avgFrameBits;
  struct mmsghdr m[BATCH];
  struct iovec iov[BATCH];
  uint64_t sent = 0, bytes = 0, eagain = 0;
  size_t i = 0;
  double t0 = now(), end = t0 + secs;
  for (;;) {
    double t = now();
    if (t >= end) break;
    /* pacing: send what is due by now, in batches */
    uint64_t due = (uint64_t)((t - t0) * pps);
    if (due <= sent) {
      double wait = (sent + BATCH - due) / pps;
      if (wait > 0.0005) wait = 0.0005;
      struct timespec ts = {0, (long)(wait * 1e9)};
      nanosleep(&ts, NULL);
      continue;
    }
    int k = (due - sent) < BATCH ? (int)(due - sent) : BATCH;
    for (int j = 0; j < k; j++) {
      iov[j].iov_base = dg[(i + j) % n];
      iov[j].iov_len = len[(i + j) % n];
      memset(&m[j].msg_hdr, 0, sizeof m[j].msg_hdr);
      m[j].msg_hdr.msg_name = &dst;
      m[j].msg_hdr.msg_namelen = sizeof dst;
      m[j].msg_hdr.msg_iov = &iov[j];
      m[j].msg_hdr.msg_iovlen = 1;
    }
    int r = sendmmsg(s, m, k, 0);
    if (r < 0) {
      if (errno == EAGAIN || errno == ENOBUFS) {
        eagain++;
        continue;
      }
      perror("sendmmsg");
      return 1;
    }
    for (int j = 0; j < r; j++) bytes += len[(i + j) % n] - 8;
    sent += r;
    i = (i + r) % n;
  }
  double took = now() - t0;
  printf("sent %llu datagrams (%llu inner bytes) in %.3f seconds (%.0f datagrams/s, %.3f Gbps of inner frames, %llu retries)\n",
         (unsigned long long)sent, (unsigned long long)bytes, took, sent / took, bytes * 8 / took / 1e9, (unsigned long long)eagain);
  return 0;
}
