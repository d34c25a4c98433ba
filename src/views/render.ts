import path from 'node:path';

import pug from 'pug';

/** Compiles each page template once; every page gets the operator's name for its header. */
export class Pages {
  readonly #compiled = new Map<string, pug.compileTemplate>();
  readonly #operatorName: string;
  constructor(operatorName: string) {
    this.#operatorName = operatorName;
  }

  render(name: 'sign-in' | 'consent' | 'error' | string, locals: Record<string, unknown>): string {
    let template = this.#compiled.get(name);
    if (!template) {
      template = pug.compileFile(path.join(import.meta.dirname, `${name}.pug`));
      this.#compiled.set(name, template);
    }
    return template({ operatorName: this.#operatorName, ...locals });
  }
}
