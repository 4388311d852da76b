/* demo.h — `iamctl demo`: a self-contained tour that needs no servers and no configuration. */
#ifndef IAMCTL_DEMO_H
#define IAMCTL_DEMO_H
int iamctl_demo(int argc, char **argv);
#endif
