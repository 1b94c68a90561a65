/* wordcount: a function (WASI command). stdin -> {"lines":..,"words":..,"bytes":..,"caller":..}
 * on stdout; EW_CALLER is the caller's identity when the agent sets one. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
  unsigned long lines = 0, words = 0, bytes = 0;
  int in_word = 0, c;
  while ((c = getchar()) != EOF) {
    bytes++;
    if (c == '\n') lines++;
    if (isspace(c)) {
      in_word = 0;
    } else if (!in_word) {
      in_word = 1;
      words++;
    }
  }
  const char* caller = getenv("EW_CALLER");
  printf("{\"lines\":%lu,\"words\":%lu,\"bytes\":%lu,\"caller\":\"%s\"}\n", lines, words, bytes,
         caller ? caller : "anonymous");
  return 0;
}
