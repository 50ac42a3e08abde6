/* Giving the allocator's free memory back; see heap.h. */
#include "core/heap.h"

#include <gperftools/malloc_extension_c.h>
#include <malloc.h>

/* Resolved only when tcmalloc is linked (polysyncd's release builds); NULL
 * otherwise, so one object serves every build. */
#pragma weak MallocExtension_ReleaseFreeMemory

void ps__heap_give_back(void)
{
    if (MallocExtension_ReleaseFreeMemory)
        MallocExtension_ReleaseFreeMemory();
    else
        malloc_trim(0);
}
