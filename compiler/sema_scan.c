// sema_scan.c — placeholder
#include "sema_internal.h"
