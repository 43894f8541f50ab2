// The one way a subcommand answers its parser's verdict: `help` prints the usage (exit 0), a
// string is a usage error printed with the usage (exit 2, the shell convention for bad usage),
// anything else is the parsed arguments to run with.
export type ParseOutcome<A> = A | 'help' | string;

/** Returns the parsed arguments, or the exit code when the command should stop here. */
export function handleUsage<A extends object>(command: string, parsed: ParseOutcome<A>, help: string): A | number {
  if (parsed === 'help') {
    console.log(help);
    return 0;
  }
  if (typeof parsed === 'string') {
    console.error(`mlx-bar ${command}: ${parsed}\n\n${help}`);
    return 2;
  }
  return parsed;
}
