/* A listening TCP socket on 127.0.0.1 at a free port, for the C tests' scripted servers. */
#ifndef STASH_TEST_LOOPBACK_H
#define STASH_TEST_LOOPBACK_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The socket (its port in *port), or -1. */
static inline int loopback_listen(int *port)
{
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 64) < 0 ||
	    getsockname(ls, (struct sockaddr *)&a, &al) < 0) {
		if (ls >= 0)
			close(ls);
		return -1;
	}
	*port = ntohs(a.sin_port);
	return ls;
}

#endif
