// The terminal: a pty opened inside the container, its master sent over
// the console socket the way runc does (one sendmsg whose payload is the
// master's name and whose ancillary data is one SCM_RIGHTS fd), the slave
// made stdio and the controlling terminal, and for init bind-mounted on
// /dev/console.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <termios.h>
#include <unistd.h>

#include "executor.h"

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

#define PTMX "/dev/pts/ptmx"

static void send_master(int sock, int master)
{
	char name[] = PTMX;
	struct iovec iov = {.iov_base = name, .iov_len = strlen(name)};
	char cbuf[CMSG_SPACE(sizeof(int))];
	memset(cbuf, 0, sizeof(cbuf));
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &master, sizeof(int));
	if (sendmsg(sock, &msg, 0) < 0)
		fail("send console master: %s", errtext(errno));
}

// mount_console bind-mounts the pty slave on /dev/console, through fds only.
static void mount_console(int slave)
{
	char src[64], dst[64];
	int fd = open("/dev/console", O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_RDONLY, 0600);
	if (fd < 0 && errno == ELOOP)
		fail("/dev/console is a symlink");
	if (fd < 0)
		fail("create /dev/console: %s", errtext(errno));
	snprintf(src, sizeof(src), "/proc/thread-self/fd/%d", slave);
	snprintf(dst, sizeof(dst), "/proc/thread-self/fd/%d", fd);
	if (mount(src, dst, "", MS_BIND, NULL) < 0)
		fail("bind mount /dev/console: %s", errtext(errno));
	close(fd);
}

void step_console(struct reader *r)
{
	int sock = (int)rd32(r);
	uint32_t rows = rd32(r), cols = rd32(r);
	int mount = rdflag(r);
	int master = open(PTMX, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0)
		fail("open %s: %s", PTMX, errtext(errno));
	// The path is the container's: make sure it really was a pty
	// multiplexer (char 5:2), not a symlinked or planted file (CVE-2025-52565
	// replaced /dev/pts entries to get an arbitrary file used as the console).
	struct stat st;
	if (fstat(master, &st) < 0 || !S_ISCHR(st.st_mode) || major(st.st_rdev) != 5 || minor(st.st_rdev) != 2)
		fail("%s is not a pty multiplexer", PTMX);
	int unlock = 0;
	if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
		fail("unlockpt: %s", errtext(errno));
	// The slave comes from the master itself, so the container cannot swap
	// the /dev/pts/N path under us.
	int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (slave < 0)
		fail("open pty slave: %s", errtext(errno));
	if (rows || cols) {
		struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
		if (ioctl(slave, TIOCSWINSZ, &ws) < 0)
			fail("set console size: %s", errtext(errno));
	}
	if (mount)
		mount_console(slave);
	send_master(sock, master);
	for (int i = 0; i <= 2; i++) {
		if (dup3(slave, i, 0) < 0)
			fail("dup2 pty slave: %s", errtext(errno));
	}
	if (ioctl(0, TIOCSCTTY, 0) < 0)
		fail("set controlling terminal: %s", errtext(errno));
	close(master);
	close(slave);
	close(sock);
}
