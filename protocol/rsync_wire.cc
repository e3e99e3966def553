#include "protocol/rsync_wire.h"
